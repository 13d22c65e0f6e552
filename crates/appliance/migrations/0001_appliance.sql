-- The appliance's state. Portable between SQLite and PostgreSQL: TEXT and BIGINT only (times
-- are milliseconds since the epoch, documents JSON text), no engine-specific types or defaults.

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    doc TEXT NOT NULL,
    discovered_at BIGINT NOT NULL
);

CREATE TABLE regions (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    discovered_at BIGINT NOT NULL,
    default_key TEXT,
    encryption_by_default BIGINT NOT NULL,
    problem TEXT,
    fix TEXT,
    PRIMARY KEY (account, region)
);

CREATE TABLE policies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    priority BIGINT NOT NULL,
    doc TEXT NOT NULL,
    next_run BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    policy TEXT,
    status TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    message TEXT,
    bytes_done BIGINT NOT NULL,
    bytes_total BIGINT NOT NULL,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
CREATE INDEX sessions_by_start ON sessions (started_at);
CREATE INDEX sessions_by_policy ON sessions (policy, status);

CREATE TABLE session_items (
    session TEXT NOT NULL,
    position BIGINT NOT NULL,
    instance TEXT NOT NULL,
    operation TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT,
    code TEXT,
    remedy TEXT,
    PRIMARY KEY (session, position)
);

CREATE TABLE session_log (
    session TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (session, seq)
);

CREATE TABLE restore_points (
    id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    policy TEXT,
    kind TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    session TEXT NOT NULL,
    doc TEXT NOT NULL,
    expired_at BIGINT
);
CREATE INDEX restore_points_by_instance ON restore_points (instance, kind, created_at);
