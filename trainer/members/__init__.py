"""The members a fused intent model combines, each a ``Predictor`` that saves into an artifact directory.

- :mod:`trainer.members.lexical`: TF-IDF word and character n-grams + logistic regression; strong
  where a query reuses the catalogue's words, blind to words it never saw.
- :mod:`trainer.members.memory`: the behaviour memory, what shoppers' clicks, carts and purchases
  already say about a query they searched often (a head query's answer without any model).

The encoder + adapter member is :class:`trainer.classifier.LoadedModel`, saved by
:mod:`trainer.artifact`. The members are combined by :mod:`trainer.fusion`.
"""
