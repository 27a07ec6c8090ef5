-- Day trading (docs/daytrading.md): the DUMPLOG audit entries, armed triggers, day-trading share
-- flows, and the cash flows between an account and the outside day-trading market.

-- Cash flows of day trading per account (cash units), summed over the decisions: `ADD`s, cash
-- paid to the day-trading market (COMMIT_BUY, buy trigger executions), cash received from it
-- (COMMIT_SELL, sell trigger executions), and the part of `held` that day trading holds (pending
-- BUYs and SET_BUY_AMOUNT reserves; the rest of `held` is open buy orders' holds). The audit:
-- initial + deposited + daytrade_added - withdrawn + sales - purchases - daytrade_paid
-- + daytrade_received = available + held.
ALTER TABLE balances
    ADD COLUMN daytrade_added    bigint NOT NULL DEFAULT 0,
    ADD COLUMN daytrade_paid     bigint NOT NULL DEFAULT 0,
    ADD COLUMN daytrade_received bigint NOT NULL DEFAULT 0,
    ADD COLUMN daytrade_held     bigint NOT NULL DEFAULT 0;

-- One row per logfile.xsd entry, from DayTradeDecided, PendingExpired, TriggerFired and
-- QuoteTicked. `kind` is the element and its rank in the DUMPLOG order:
-- 0 userCommand, 1 quoteServer, 2 accountTransaction, 3 systemEvent, 4 errorEvent.
-- A record makes at most one entry of each kind, so (src_partition, src_offset, kind) is unique,
-- and the DUMPLOG order (ts_ms, txn, kind, src_partition, src_offset) is the primary key: the
-- admin DUMPLOG reads the primary key in order, a user's DUMPLOG the username index (which also
-- finds a DUMPLOG's own entry: the admin form's is the only kind of row without a username).
CREATE TABLE audit_entries (
    ts_ms             bigint           NOT NULL,  -- the record's ts // 1000 (timestamp)
    txn               bigint           NOT NULL,  -- transactionNum
    kind              smallint         NOT NULL CHECK (kind BETWEEN 0 AND 4),
    src_partition     int              NOT NULL,  -- account.events partition
    src_offset        bigint           NOT NULL,
    username          text COLLATE "C",           -- NULL: the admin DUMPLOG's userCommand
    command           text COLLATE "C",           -- userCommand, systemEvent, errorEvent
    stock_symbol      text COLLATE "C",
    funds             bigint,                     -- cash units (a trigger price: price x 100)
    price             bigint,                     -- quoteServer: price units
    quote_server_time bigint,                     -- quoteServer: ms
    cryptokey         text COLLATE "C",           -- quoteServer
    action            text COLLATE "C",           -- accountTransaction: add | remove
    filename          text COLLATE "C",           -- DUMPLOG's file name as the client gave it
    error_message     text,                       -- errorEvent: 'code: sentence'
    PRIMARY KEY (ts_ms, txn, kind, src_partition, src_offset)
);
CREATE INDEX audit_entries_user
    ON audit_entries (username, ts_ms, txn, kind, src_partition, src_offset);

-- Armed day-trading triggers: a row per (account, symbol, side) whose trigger is set. A
-- successful SET_*_TRIGGER arms (or moves) it; CANCEL_SET_* and its execution (TriggerFired)
-- delete the row. The gateway's ticker quotes `SELECT DISTINCT symbol FROM daytrade_triggers`.
CREATE TABLE daytrade_triggers (
    account_id text COLLATE "C" NOT NULL,
    symbol     text COLLATE "C" NOT NULL,
    side       text COLLATE "C" NOT NULL,         -- BUY | SELL
    trigger    bigint           NOT NULL,         -- price units
    txn        bigint           NOT NULL,         -- the SET_*_TRIGGER that set it
    updated_ts bigint           NOT NULL,
    PRIMARY KEY (account_id, symbol, side)
) WITH (fillfactor = 50);
CREATE INDEX daytrade_triggers_symbol ON daytrade_triggers (symbol);

-- Whole day-trading shares bought from and sold to the day-trading market, per account and
-- symbol (COMMIT_BUY, COMMIT_SELL, trigger executions). A holding apart from `positions`: these
-- shares never enter a book. bought - sold = holding + pending SELLs + sell-trigger reserves.
CREATE TABLE daytrade_shares (
    account_id text COLLATE "C" NOT NULL,
    symbol     text COLLATE "C" NOT NULL,
    bought     bigint           NOT NULL,
    sold       bigint           NOT NULL,
    updated_ts bigint           NOT NULL,
    PRIMARY KEY (account_id, symbol)
) WITH (fillfactor = 50);
