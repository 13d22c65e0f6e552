-- The engine's journals and catalog, so that an appliance that takes over another's sessions
-- needs nothing of its data directory. A journal is owned through a lease (owner, lease_until)
-- that its holder renews; only a journal whose lease lapsed is taken over.

CREATE TABLE journals (
    session TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    closed BIGINT NOT NULL
);
CREATE INDEX journals_open ON journals (closed, owner);

CREATE TABLE journal_entries (
    session TEXT NOT NULL,
    seq BIGINT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (session, seq)
);

CREATE TABLE catalog (
    snapshot TEXT PRIMARY KEY,
    volume TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    session TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    position BIGINT NOT NULL
);
