package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// lockDir takes an exclusive lock on dir/LOCK for as long as the returned
// file stays open. Two FerretDBs on one set of SQLite files would each
// believe they are its only writer (pushreg serialises writes only within
// its process), so a second one is refused. The kernel drops the lock
// when the process dies, so a crash leaves nothing to clean up.
func lockDir(dir string) (*os.File, error) {
	name := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded: lock data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("embedded: data directory %s is in use by another pushreg (it holds %s); stop it or use another PUSHREG_DATA_DIR", dir, name)
		}
		return nil, fmt.Errorf("embedded: lock data directory: %w", err)
	}
	return f, nil
}
