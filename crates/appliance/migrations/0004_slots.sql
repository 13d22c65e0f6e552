-- The per account-and-region session limit, shared by every appliance on the database: slot N of
-- PLACE ("ACCOUNT/REGION") is held by one engine session of one appliance until its lease lapses.
-- A slot is taken by inserting its row, or by taking over a row whose lease has lapsed (its
-- appliance died); it is freed by deleting the row.
CREATE TABLE slots (
    place TEXT NOT NULL,
    n BIGINT NOT NULL,
    holder TEXT NOT NULL,
    appliance TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    PRIMARY KEY (place, n)
);
CREATE INDEX slots_appliance ON slots (appliance);
