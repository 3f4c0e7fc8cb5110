// Package cni attaches pod network namespaces to the network described by the
// first valid CNI configuration in a directory, through libcni.
//
// The configuration directory is watched, so the runtime's NetworkReady
// condition follows configs appearing and going. Every ADD is recorded on disk
// (config bytes and arguments) before the plugins run, so that DEL — on stop,
// on remove, on every failure path and after a daemon restart — always runs
// with the exact configuration and arguments that ADD used, even when the
// configuration directory has changed since.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/fsnotify/fsnotify"

	"github.com/skiffcri/skiff/errdefs"
)

// Default locations, matching the conventions of other runtimes and of the
// Debian containernetworking-plugins package.
const (
	DefaultConfDir = "/etc/cni/net.d"
	DefaultIfName  = "eth0"
)

// DefaultBinDirs are searched for plugin binaries when Options.BinDirs is empty.
var DefaultBinDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}

// confExtensions are the file name extensions libcni and other runtimes
// accept in a configuration directory.
var confExtensions = []string{".conflist", ".conf", ".json"}

// Options configures a Manager.
type Options struct {
	// ConfDir holds the network configurations; the lexically first valid
	// one is used. Created if missing so it can be watched.
	ConfDir string
	// BinDirs are searched, in order, for plugin binaries.
	BinDirs []string
	// CacheDir holds libcni's result cache and Skiff's attachment records.
	// It must survive daemon restarts (but may be lost on reboot, when all
	// attachments are gone anyway), e.g. /var/lib/skiff/cni.
	CacheDir string
	// Log receives configuration change events; nil discards them.
	Log *slog.Logger
}

// Manager runs CNI operations for pods. It is safe for concurrent use on
// different pods; calls for one pod must be serialised by the caller.
type Manager struct {
	confDir  string
	binDirs  []string
	cacheDir string
	log      *slog.Logger
	cni      *libcni.CNIConfig

	mu       sync.RWMutex
	list     *libcni.NetworkConfigList // nil when no valid config is loaded
	listFile string
	loadErr  error

	watcher *fsnotify.Watcher
	done    chan struct{}
	closed  sync.Once
}

// New loads the network configuration from opts.ConfDir and starts watching
// the directory. A missing or empty configuration is not an error: Ready
// reports it until a configuration appears. Close stops the watcher.
func New(ctx context.Context, opts Options) (*Manager, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.ConfDir == "" {
		opts.ConfDir = DefaultConfDir
	}
	if len(opts.BinDirs) == 0 {
		opts.BinDirs = DefaultBinDirs
	}
	if opts.CacheDir == "" {
		return nil, errdefs.InvalidArgument("cni: cache dir is required")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.ConfDir, 0o755); err != nil {
		return nil, fmt.Errorf("cni: create conf dir: %w", err)
	}
	if err := os.MkdirAll(recordDir(opts.CacheDir), 0o700); err != nil {
		return nil, fmt.Errorf("cni: create cache dir: %w", err)
	}
	m := &Manager{
		confDir:  opts.ConfDir,
		binDirs:  slices.Clone(opts.BinDirs),
		cacheDir: opts.CacheDir,
		log:      log,
		cni:      libcni.NewCNIConfigWithCacheDir(slices.Clone(opts.BinDirs), opts.CacheDir, nil),
		done:     make(chan struct{}),
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("cni: watch %s: %w", opts.ConfDir, err)
	}
	if err := w.Add(opts.ConfDir); err != nil {
		w.Close()
		return nil, fmt.Errorf("cni: watch %s: %w", opts.ConfDir, err)
	}
	m.watcher = w
	// Load after the watch is in place so that a config written in between
	// is not missed.
	m.reload()
	go m.watch()
	return m, nil
}

// Close stops watching the configuration directory. It does not touch any
// attachment.
func (m *Manager) Close() error {
	var err error
	m.closed.Do(func() {
		err = m.watcher.Close()
		<-m.done
	})
	return err
}

// Ready reports nil when a network configuration is loaded, otherwise why
// not. It backs the CRI NetworkReady condition.
func (m *Manager) Ready() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.list != nil {
		return nil
	}
	if m.loadErr != nil {
		return errdefs.FailedPrecondition("cni config uninitialized: %v", m.loadErr)
	}
	return errdefs.FailedPrecondition("cni config uninitialized: no network config found in %s", m.confDir)
}

// NetworkName returns the name of the loaded network and the file it came
// from, or empty strings when none is loaded.
func (m *Manager) NetworkName() (name, file string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.list == nil {
		return "", ""
	}
	return m.list.Name, m.listFile
}

// current returns the loaded configuration or the Ready error.
func (m *Manager) current() (*libcni.NetworkConfigList, error) {
	m.mu.RLock()
	list := m.list
	m.mu.RUnlock()
	if list == nil {
		return nil, m.Ready()
	}
	return list, nil
}

// resyncInterval bounds how long a missed event (the conf dir itself
// deleted and recreated, which ends an inotify watch) keeps Ready stale.
const resyncInterval = 30 * time.Second

func (m *Manager) watch() {
	defer close(m.done)
	tick := time.NewTicker(resyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			// Re-arm the watch in case the directory was replaced; a
			// missing directory just means no config.
			_ = m.watcher.Add(m.confDir)
			m.reload()
		case ev, ok := <-m.watcher.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			m.reload()
		case err, ok := <-m.watcher.Errors:
			if !ok {
				return
			}
			// An overflow may have hidden events: re-read the directory.
			m.log.Warn("cni conf dir watch error", "dir", m.confDir, "err", err)
			m.reload()
		}
	}
}

// reload re-reads the configuration directory and swaps in the first valid
// configuration.
func (m *Manager) reload() {
	list, file, err := loadConfDir(m.confDir)
	m.mu.Lock()
	prevName, prevFile := "", m.listFile
	if m.list != nil {
		prevName = m.list.Name
	}
	m.list, m.listFile, m.loadErr = list, file, err
	m.mu.Unlock()
	switch {
	case list == nil && prevName != "":
		m.log.Info("cni network config removed", "dir", m.confDir, "err", err)
	case list != nil && (list.Name != prevName || file != prevFile):
		m.log.Info("cni network config loaded", "network", list.Name, "file", file)
	}
}

// loadConfDir returns the lexically first file in dir that parses as a
// network configuration (list), as containerd and CRI-O do. Invalid files are
// skipped; the returned error explains why nothing was loaded when every file
// was invalid.
func loadConfDir(dir string) (*libcni.NetworkConfigList, string, error) {
	files, err := libcni.ConfFiles(dir, confExtensions)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", dir, err)
	}
	slices.Sort(files)
	var errs []error
	for _, f := range files {
		list, err := loadConfFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return list, f, nil
	}
	if len(errs) > 0 {
		return nil, "", fmt.Errorf("no valid network config in %s: %w", dir, errors.Join(errs...))
	}
	return nil, "", nil
}

func loadConfFile(file string) (*libcni.NetworkConfigList, error) {
	var (
		list *libcni.NetworkConfigList
		err  error
	)
	if filepath.Ext(file) == ".conflist" {
		list, err = libcni.NetworkConfFromFile(file)
	} else {
		list, err = singlePluginList(file)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("%s: no plugins", file)
	}
	return list, nil
}

// singlePluginList wraps a single-plugin .conf/.json file, still common in
// conf dirs, into a list of one plugin (libcni deprecated its helpers for
// this format, not the format's use by runtimes).
func singlePluginList(file string) (*libcni.NetworkConfigList, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var plugin map[string]any
	if err := json.Unmarshal(data, &plugin); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if t, _ := plugin["type"].(string); t == "" {
		return nil, fmt.Errorf("missing 'type'")
	}
	listBytes, err := json.Marshal(map[string]any{
		"cniVersion": plugin["cniVersion"],
		"name":       plugin["name"],
		"plugins":    []any{plugin},
	})
	if err != nil {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(listBytes)
}
