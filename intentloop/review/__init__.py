"""The review queue: which queries people label next (``select``), and how much they agree
(``agreement``). Reviewed labels are gold (``store.review``) and flow into the gate and training.

Nothing here is imported eagerly: the dashboard imports ``agreement`` and ``settings`` and must not
load the model stack that ``select`` needs.
"""
