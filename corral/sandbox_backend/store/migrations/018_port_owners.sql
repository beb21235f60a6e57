-- Which server listens for an exposed port; another server takes it over only once that one is gone.
ALTER TABLE ports ADD COLUMN instance_id TEXT;
