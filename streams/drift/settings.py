"""The ``drift`` settings section: windows, thresholds and what an alert does.

Composed by ``intentloop.settings`` as ``INTENTLOOP_DRIFT__*``. It lives next to the code it
configures (``streams.drift``), like ``streams.weak.settings`` does for the aggregation job.
"""

from typing import Literal

from pydantic import BaseModel, Field

from streams.drift.stats import Thresholds


class DriftSettings(BaseModel):
    """Knobs of ``intentloop drift check`` and of the dashboard.

    Defaults suit hourly windows of a live shop: a window needs ``min_samples`` labelled searches
    before its statistics may alert (quiet night hours stay silent), and a statistic alerts only
    when its effect size crosses the threshold *and* a chi-square test says the change is not
    sampling noise (``max_p_value``).
    """

    window_s: int = Field(default=3600, ge=1, description="window length in seconds (hourly by default)")
    clock: Literal["wall", "events"] = Field(
        default="wall",
        description="'wall': windows end at the current time; 'events': at the newest stored vote "
        "(replays, backfills, the demo's simulated timestamps)",
    )
    settle_s: float = Field(
        default=120.0, ge=0, description="a window is evaluated only this long after it closed (late votes)"
    )
    lookback_windows: int = Field(
        default=24, ge=1, description="windows (re)computed by one check when no --since is given"
    )
    min_samples: int = Field(default=200, ge=1, description="labelled searches a window needs to alert")
    min_reference: int = Field(default=200, ge=1, description="samples the reference needs to alert")
    psi_warn: float = Field(default=0.1, ge=0, description="PSI band: moderate shift from here")
    psi_alert: float = Field(default=0.25, ge=0, description="PSI band: major shift from here (alert)")
    js_alert: float = Field(default=0.2, ge=0, le=1, description="Jensen-Shannon distance (base 2) alert")
    hellinger_alert: float | None = Field(default=None, ge=0, le=1, description="None: not alerting")
    linf_alert: float | None = Field(default=None, ge=0, le=1, description="None: not alerting")
    max_p_value: float = Field(
        default=0.001, gt=0, le=1, description="chi-square p-value a statistic's alert also needs"
    )
    new_label_min_count: int = Field(default=10, ge=1, description="a new label alerts from this count")
    new_label_min_share: float = Field(default=0.02, ge=0, le=1, description="... and this share")
    new_label_max_reference_share: float = Field(
        default=0.005, ge=0, le=1, description="... if its reference share was below this (noise level)"
    )
    vanished_min_expected: float = Field(
        default=10.0, gt=0, description="a vanished label alerts when the reference expected this many"
    )
    smoothing: float = Field(default=0.5, gt=0, description="pseudo-count per label for PSI's empty bins")
    help_surge_factor: float = Field(
        default=2.0,
        gt=1,
        description="intent types: a window whose share of help searches is this many times the "
        "share of the windows before it alerts as a help surge (an incident signal: a broken "
        "checkout, a late delivery wave), besides the distribution checks",
    )
    help_surge_min_delta: float = Field(
        default=0.05, ge=0, le=1, description="... and at least this much higher (absolute share)"
    )
    help_surge_min_searches: int = Field(
        default=50, ge=1, description="... in a window of at least this many typed searches"
    )
    refresh_on_alert: bool = Field(
        default=False,
        description="an alert against the training snapshot requests a refresh (Redis key "
        "<prefix>:refresh:requested) for the trainer's scheduler",
    )
    dashboard_port: int = Field(
        default=8090, ge=1, le=65535, description="`intentloop dashboard` port (its --port overrides)"
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(
            min_samples=self.min_samples,
            min_reference=self.min_reference,
            psi_warn=self.psi_warn,
            psi_alert=self.psi_alert,
            js_alert=self.js_alert,
            hellinger_alert=self.hellinger_alert,
            linf_alert=self.linf_alert,
            max_p_value=self.max_p_value,
            new_label_min_count=self.new_label_min_count,
            new_label_min_share=self.new_label_min_share,
            new_label_max_reference_share=self.new_label_max_reference_share,
            vanished_min_expected=self.vanished_min_expected,
            smoothing=self.smoothing,
        )
