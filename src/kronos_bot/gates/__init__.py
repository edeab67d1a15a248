"""The three gates. Each is a pure function from data + its config section to a verdict with numbers:

- `technical_gate(bars, settings.gates.technical) -> TechnicalResult`
- `sentiment_gate(articles, now, settings.gates.sentiment, ...) -> SentimentResult`
- `kronos_gate(forecast, last_close, settings.gates.kronos, ...) -> KronosResult`

plus the cycle helpers that fetch what the pure functions need (`sentiment_gates`, `kronos_gates` with
its forecast cache). Nothing here imports torch.
"""

from kronos_bot.gates.forecast_cache import (
    ForecastCache,
    forecast_symbols,
    kronos_gates,
    model_fingerprint,
    sampling_params,
    series_input,
)
from kronos_bot.gates.kronos import kronos_gate
from kronos_bot.gates.sentiment import score_article, score_text, sentiment_gate, sentiment_gates
from kronos_bot.gates.technical import ema, macd, technical_gate, wilder_rsi

__all__ = [
    "ForecastCache",
    "ema",
    "forecast_symbols",
    "kronos_gate",
    "kronos_gates",
    "macd",
    "model_fingerprint",
    "sampling_params",
    "score_article",
    "score_text",
    "sentiment_gate",
    "sentiment_gates",
    "series_input",
    "technical_gate",
    "wilder_rsi",
]
