-- The instance each snapshot restore point was taken of, as it was (type, boot, network,
-- tags, volumes at their devices), in the engine's JSON form (`InstanceRecord`), so that a
-- restore launches it as it was. NULL: recorded before instances were, or not described.
ALTER TABLE catalog ADD COLUMN instance_record TEXT;
