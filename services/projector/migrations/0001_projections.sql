-- Marketlog projections (schema `projection`; the runner sets search_path, so names are bare).
-- Amounts are BIGINT integer units (services/common/money.py): price 1e-4, quantity 1e-2 share,
-- cash 1e-6. Times are the records' envelope ts: microseconds since the epoch. No wall clock.
-- Text columns hold identifiers and compare bytewise (COLLATE "C") whatever the cluster locale.
-- Tables updated in place leave room in their pages (fillfactor) so updates can stay HOT.

-- (consumer group, topic, partition) -> the next offset to apply; written in the same
-- transaction as the rows, and announced with NOTIFY marketlog_applied (docs/projector.md).
CREATE TABLE applied_offsets (
    consumer_group text COLLATE "C" NOT NULL,
    topic          text COLLATE "C" NOT NULL,
    partition      int              NOT NULL,
    next_offset    bigint           NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
) WITH (fillfactor = 50);

CREATE TABLE accounts (
    account_id      text COLLATE "C" PRIMARY KEY,
    initial_balance bigint           NOT NULL,  -- cash units
    created_ts      bigint           NOT NULL,
    command_id      text COLLATE "C" NOT NULL
);

-- Cash per account, as the ledger reported it after its latest decision.
CREATE TABLE balances (
    account_id text COLLATE "C" PRIMARY KEY,
    available  bigint           NOT NULL,
    held       bigint           NOT NULL,       -- held for open buy orders
    deposited  bigint           NOT NULL,       -- sum of deposits (the initial balance excluded)
    withdrawn  bigint           NOT NULL,       -- sum of withdrawals (paid out)
    updated_ts bigint           NOT NULL
) WITH (fillfactor = 50);

CREATE TABLE symbols (
    symbol     text COLLATE "C" PRIMARY KEY,
    tick       bigint           NOT NULL,       -- price units
    lot        bigint           NOT NULL,       -- quantity units
    created_ts bigint           NOT NULL,
    command_id text COLLATE "C" NOT NULL
);

-- Shares per account and symbol (from the first issue or fill). A row may be all zero (sold out).
CREATE TABLE positions (
    account_id text COLLATE "C" NOT NULL,
    symbol     text COLLATE "C" NOT NULL,
    available  bigint           NOT NULL,
    held       bigint           NOT NULL,       -- held for open sell orders
    issued     bigint           NOT NULL,       -- sum of shares issued to this account
    updated_ts bigint           NOT NULL,
    PRIMARY KEY (account_id, symbol)
) WITH (fillfactor = 50);

-- One row per accepted order with its current state; each fill is a row of `executions`, and
-- every decision about it is in `audit_log` (account_id, order_id): the full status history.
CREATE TABLE orders (
    order_id          bigint           PRIMARY KEY,
    account_id        text COLLATE "C" NOT NULL,
    client_order_id   text COLLATE "C" NOT NULL,
    symbol            text COLLATE "C" NOT NULL,
    side              text COLLATE "C" NOT NULL,  -- BUY | SELL
    price             bigint,                     -- limit, price units; NULL = market order
    qty               bigint           NOT NULL,  -- quantity ordered
    tif               text COLLATE "C" NOT NULL,  -- GTC | IOC | FOK | GTD
    expire_ts         bigint,
    post_only         boolean          NOT NULL,
    stp               text COLLATE "C" NOT NULL,
    budget            bigint,                     -- market buy: cash budget
    replaces          bigint,                     -- the order this one replaced
    open_qty          bigint           NOT NULL,  -- still open (0 once executed or cancelled)
    executed_qty      bigint           NOT NULL,
    executed_notional bigint           NOT NULL,  -- sum of price x qty over fills, cash units
    cancelled_qty     bigint           NOT NULL,  -- closed without trading (cancel, IOC rest…)
    cancelled_ts      bigint,                     -- when it was cancelled
    reduced_qty       bigint           NOT NULL,  -- removed by reduce requests
    close_reason      text COLLATE "C",           -- marketlog.CloseReason of the close
    hold              bigint           NOT NULL,  -- cash (buy) or shares (sell) still held
    updated_ts        bigint           NOT NULL,
    created_ts        bigint           NOT NULL,
    command_id        text COLLATE "C" NOT NULL,
    status            text COLLATE "C" NOT NULL GENERATED ALWAYS AS (
        CASE WHEN open_qty > 0 THEN 'open'
             WHEN cancelled_qty > 0 OR executed_qty = 0 THEN 'cancelled'
             ELSE 'executed' END) STORED
) WITH (fillfactor = 80);
CREATE INDEX orders_account ON orders (account_id, order_id);

-- One row per fill of an order (both sides of every trade have one).
CREATE TABLE executions (
    order_id   bigint           NOT NULL,
    seq        bigint           NOT NULL,       -- the trade's per-symbol sequence number
    symbol     text COLLATE "C" NOT NULL,
    account_id text COLLATE "C" NOT NULL,
    side       text COLLATE "C" NOT NULL,
    price      bigint           NOT NULL,
    qty        bigint           NOT NULL,
    role       text COLLATE "C" NOT NULL,       -- MAKER | TAKER
    ts         bigint           NOT NULL,
    command_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (order_id, seq)
);
CREATE INDEX executions_account ON executions (account_id, ts);

-- The public tape (market.events): no account ids.
CREATE TABLE trades (
    symbol         text COLLATE "C" NOT NULL,
    seq            bigint           NOT NULL,
    price          bigint           NOT NULL,
    qty            bigint           NOT NULL,
    maker_order_id bigint           NOT NULL,
    taker_order_id bigint           NOT NULL,
    taker_side     text COLLATE "C" NOT NULL,
    ts             bigint           NOT NULL,
    command_id     text COLLATE "C" NOT NULL,
    PRIMARY KEY (symbol, seq)
);

-- The public book, aggregated by price (L2). Levels at zero are deleted.
CREATE TABLE book_levels (
    symbol text COLLATE "C" NOT NULL,
    side   text COLLATE "C" NOT NULL,
    price  bigint           NOT NULL,
    qty    bigint           NOT NULL,
    seq    bigint           NOT NULL,           -- the last event that changed this level
    PRIMARY KEY (symbol, side, price)
) WITH (fillfactor = 50);

-- Per symbol, the market.events sequence number the book_levels reflect.
CREATE TABLE books (
    symbol text COLLATE "C" PRIMARY KEY,
    seq    bigint           NOT NULL,
    ts     bigint           NOT NULL
) WITH (fillfactor = 50);

CREATE TABLE market_stats (
    symbol     text COLLATE "C" PRIMARY KEY,
    trades     bigint           NOT NULL,
    volume     bigint           NOT NULL,       -- quantity units
    notional   bigint           NOT NULL,       -- cash units
    high       bigint           NOT NULL,
    low        bigint           NOT NULL,
    last_price bigint           NOT NULL,
    last_qty   bigint           NOT NULL,
    last_seq   bigint           NOT NULL,
    last_ts    bigint           NOT NULL
) WITH (fillfactor = 50);

-- Every decision on account.events, in log order (src_partition, src_offset). The columns are
-- what logfile.xsd can express; `kind` names the element a DUMPLOG renders the row as.
CREATE TABLE audit_log (
    src_partition int              NOT NULL,
    src_offset    bigint           NOT NULL,
    ts            bigint           NOT NULL,    -- microseconds (logfile.xsd wants ms: ts / 1000)
    command_id    text COLLATE "C" NOT NULL,
    command       text COLLATE "C" NOT NULL,    -- originating command, e.g. PlaceOrder, Deposit
    event         text COLLATE "C" NOT NULL,    -- the decision record, e.g. OrderFilled
    kind          text COLLATE "C" NOT NULL,    -- accountTransaction | systemEvent | errorEvent
    account_id    text COLLATE "C",             -- username (NULL for SymbolCreated)
    symbol        text COLLATE "C",             -- stockSymbol
    order_id      bigint,
    side          text COLLATE "C",
    price         bigint,                       -- price units
    qty           bigint,                       -- quantity units
    funds         bigint,                       -- cash units
    action        text COLLATE "C",             -- accountTransaction: add | remove
    message       text,                         -- errorMessage / debugMessage
    PRIMARY KEY (src_partition, src_offset)
);
CREATE INDEX audit_log_account ON audit_log (account_id, ts);
