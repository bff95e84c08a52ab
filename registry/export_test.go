package registry

// SetSweepBatch lowers how many users (and tokens) one sweep's device work
// handles, so that a test can reach the bound with few users.
func (s *Store) SetSweepBatch(n int) { s.sweepBatch = n }
