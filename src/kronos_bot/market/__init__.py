"""Market data from Alpaca: closed hourly bars (validated), latest prices, and news.

Everything here goes through alpaca-py with our own timeout and retry policy (see `alpaca_http`), and
never imports torch.
"""

from kronos_bot.market.alpaca_http import MarketDataError
from kronos_bot.market.bars import (
    BAR_COLUMNS,
    AlpacaMarketData,
    BarsProblem,
    ValidBars,
    bars_frame,
    closed_bars_only,
    fetch_closed_bars,
    latest_prices,
    load_bars_csv,
    validate_bars,
)
from kronos_bot.market.news import (
    AlpacaNewsProvider,
    FearGreedProvider,
    FearGreedReading,
    NewsArticle,
    NewsFeed,
    NewsProvider,
    build_news_feed,
)
from kronos_bot.retry import RetryPolicy

__all__ = [
    "BAR_COLUMNS",
    "AlpacaMarketData",
    "AlpacaNewsProvider",
    "BarsProblem",
    "FearGreedProvider",
    "FearGreedReading",
    "MarketDataError",
    "NewsArticle",
    "NewsFeed",
    "NewsProvider",
    "RetryPolicy",
    "ValidBars",
    "bars_frame",
    "build_news_feed",
    "closed_bars_only",
    "fetch_closed_bars",
    "latest_prices",
    "load_bars_csv",
    "validate_bars",
]
