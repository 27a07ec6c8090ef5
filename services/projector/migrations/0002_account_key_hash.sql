-- AccountCreated carries the SHA-256 hex of the account's API key (never the key): the gateway
-- authenticates by looking the hash up. Records written before the field existed read as ''.
ALTER TABLE accounts ADD COLUMN api_key_hash text COLLATE "C" NOT NULL DEFAULT '';
CREATE INDEX accounts_api_key_hash ON accounts (api_key_hash);
