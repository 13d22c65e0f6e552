-- The key that encrypts each snapshot restore point (its ARN; an AWS managed key as its alias
-- ARN), so that a restore point says under which key it is. NULL: unencrypted, or recorded
-- before keys were.
ALTER TABLE catalog ADD COLUMN key_arn TEXT;
