"""The journal file's schema: ordered migrations, applied by `Journal` when it opens a file.

A journal written by any earlier version opens with a later one (each migration runs once, recorded in
`schema_version`); a file newer than this code is refused rather than misread. The simulated broker's
tables live in the same file and schema (their SQL is in `broker.sim_store`).
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE cycles (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                started_at TEXT NOT NULL,
                ended_at TEXT,
                duration_ms REAL,
                status TEXT,
                stats TEXT
            )""",
            """CREATE TABLE decisions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                cycle_id INTEGER REFERENCES cycles(id),
                symbol TEXT NOT NULL,
                decided_at TEXT NOT NULL,
                action TEXT NOT NULL,
                tier TEXT,
                notional TEXT NOT NULL,
                reasons TEXT NOT NULL,
                detail TEXT NOT NULL,
                technical_verdict TEXT,
                sentiment_verdict TEXT,
                sentiment_score REAL,
                kronos_signal TEXT,
                kronos_confidence REAL,
                technical TEXT,
                sentiment TEXT,
                kronos TEXT,
                config_fingerprint TEXT,
                model_revision TEXT
            )""",
            "CREATE INDEX decisions_time ON decisions(decided_at)",
            "CREATE INDEX decisions_symbol_time ON decisions(symbol, decided_at)",
            """CREATE TABLE positions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                symbol TEXT NOT NULL,
                status TEXT NOT NULL,
                tier TEXT,
                external INTEGER NOT NULL DEFAULT 0,
                decision_id INTEGER,
                entry_client_order_id TEXT,
                entry_time TEXT NOT NULL,
                entry_price TEXT NOT NULL,
                entry_filled_qty TEXT NOT NULL,
                entry_cost TEXT NOT NULL,
                entry_fee TEXT NOT NULL,
                qty TEXT NOT NULL,
                hwm TEXT NOT NULL,
                stop_price TEXT,
                trail_armed INTEGER NOT NULL DEFAULT 0,
                backstop_order_id TEXT,
                backstop_client_order_id TEXT,
                backstop_stop TEXT,
                backstop_seq INTEGER NOT NULL DEFAULT 0,
                exit_time TEXT,
                exit_price TEXT,
                exit_qty TEXT,
                exit_reason TEXT,
                exit_fee TEXT,
                proceeds TEXT,
                pnl TEXT,
                pnl_percent TEXT,
                updated_at TEXT NOT NULL
            )""",
            "CREATE UNIQUE INDEX positions_one_open ON positions(symbol) WHERE status = 'open'",
            "CREATE INDEX positions_exit_time ON positions(exit_time)",
            """CREATE TABLE orders (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                client_order_id TEXT NOT NULL UNIQUE,
                broker_order_id TEXT,
                symbol TEXT NOT NULL,
                side TEXT NOT NULL,
                type TEXT NOT NULL,
                purpose TEXT NOT NULL,
                position_id INTEGER,
                decision_id INTEGER,
                status TEXT NOT NULL,
                raw_status TEXT,
                notional TEXT,
                qty TEXT,
                stop_price TEXT,
                limit_price TEXT,
                filled_qty TEXT,
                filled_avg_price TEXT,
                fee TEXT,
                fee_asset TEXT,
                error TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX orders_status ON orders(status)",
            "CREATE INDEX orders_broker_id ON orders(broker_order_id)",
            """CREATE TABLE forecasts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                symbol TEXT NOT NULL,
                last_bar_time TEXT NOT NULL,
                model TEXT NOT NULL,
                sampling TEXT NOT NULL,
                created_at TEXT NOT NULL,
                payload TEXT NOT NULL,
                UNIQUE (symbol, last_bar_time, model, sampling)
            )""",
            """CREATE TABLE sim_account (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                cash TEXT NOT NULL,
                starting_cash TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE sim_positions (
                symbol TEXT PRIMARY KEY,
                qty TEXT NOT NULL,
                avg_entry_price TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE sim_orders (
                order_id TEXT PRIMARY KEY,
                client_order_id TEXT NOT NULL UNIQUE,
                symbol TEXT NOT NULL,
                side TEXT NOT NULL,
                type TEXT NOT NULL,
                status TEXT NOT NULL,
                qty TEXT,
                notional TEXT,
                filled_qty TEXT NOT NULL,
                filled_avg_price TEXT,
                stop_price TEXT,
                limit_price TEXT,
                fee TEXT,
                fee_asset TEXT,
                triggered INTEGER NOT NULL DEFAULT 0,
                replaced_by TEXT,
                submitted_at TEXT,
                filled_at TEXT,
                updated_at TEXT NOT NULL
            )""",
            "CREATE INDEX sim_orders_status ON sim_orders(status)",
        ],
    ),
    (
        # Indexes for the queries every cycle runs (and a backtest runs per replayed hour): open
        # positions, each symbol's last exit (the cooldown), a position's orders.
        2,
        [
            "CREATE INDEX positions_status ON positions(status, exit_time)",
            "CREATE INDEX positions_closed_symbol_exit ON positions(symbol, exit_time) WHERE status = 'closed'",
            "CREATE INDEX orders_position ON orders(position_id, id)",
        ],
    ),
    (
        # Why an exit order was sent (trailing_stop, stop_loss...): a sell that fills while the bot is down
        # closes its position with that reason after the restart, never as `external`.
        3,
        ["ALTER TABLE orders ADD COLUMN reason TEXT", "ALTER TABLE orders ADD COLUMN filled_at TEXT"],
    ),
    (
        # Self-grading (#13): every forecast the trader used, scored when its horizon bar has closed, and
        # every decision's shadow entry (what entering at the next bar open would have done).
        4,
        [
            """CREATE TABLE skill_forecasts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                symbol TEXT NOT NULL,
                origin TEXT NOT NULL,
                horizon INTEGER NOT NULL,
                horizon_bar TEXT NOT NULL,
                model TEXT NOT NULL,
                seed INTEGER,
                samples INTEGER,
                facts TEXT NOT NULL,
                status TEXT NOT NULL,
                scores TEXT,
                reason TEXT,
                created_at TEXT NOT NULL,
                scored_at TEXT,
                UNIQUE (symbol, origin, horizon, model)
            )""",
            "CREATE INDEX skill_forecasts_status ON skill_forecasts(status, horizon_bar)",
            "CREATE INDEX skill_forecasts_origin ON skill_forecasts(origin)",
            """CREATE TABLE shadow_outcomes (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                symbol TEXT NOT NULL,
                entry_bar TEXT NOT NULL,
                status TEXT NOT NULL,
                entry_price TEXT,
                exit_price TEXT,
                exit_time TEXT,
                exit_reason TEXT,
                return_pct REAL,
                created_at TEXT NOT NULL,
                done_at TEXT,
                UNIQUE (symbol, entry_bar)
            )""",
            "CREATE INDEX shadow_outcomes_status ON shadow_outcomes(status, entry_bar)",
        ],
    ),
    (
        # What the running trader last said about itself (#14), for `kronos-bot status` in another
        # process: its lifecycle, the degraded parts, the last account reading. One JSON value per key.
        5,
        [
            """CREATE TABLE runtime_state (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )""",
        ],
    ),
    (
        # Reconciliation asks every cycle for filled entries without a position (#9). An entry is linked
        # to its position in the transaction that opens it, so only unlinked entry orders can qualify:
        # indexed, the question costs a lookup per unlinked order instead of a scan of every order.
        6,
        [
            "CREATE INDEX orders_unlinked_entries ON orders(purpose) WHERE position_id IS NULL",
            "CREATE INDEX positions_entry_client_order_id ON positions(entry_client_order_id)",
        ],
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
