package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// ErrUnknownUser means a delivery was for a user who does not exist. A
// Directory reports it, wrapped.
var ErrUnknownUser = errors.New("push: unknown user")

// MaxUsers is the most users one DeliverMany call sends to.
const MaxUsers = 1000

// DefaultLookups is the default of DelivererConfig.Lookups.
const DefaultLookups = 8

// pruneTimeout bounds the registry updates after a send. They run even when
// the caller's context has ended meanwhile: FCM's verdict on a token is worth
// keeping once it has been paid for.
const pruneTimeout = 10 * time.Second

// Target is one device to push to: its ID in the registry and the FCM token
// it holds.
type Target struct {
	DeviceID string
	Token    string
}

// Directory is what delivering needs of the device registry. This package
// knows no database; cmd/pushreg adapts the registry to it.
type Directory interface {
	// Pushable returns, for each of userIDs that exists, the user's devices
	// whose tokens may be pushed to (valid or unverified), possibly none.
	// Users that do not exist are absent from the map. One call serves a
	// whole delivery, so a store can answer it with one query.
	Pushable(ctx context.Context, userIDs []string) (map[string][]Target, error)
	// Prune unbinds token from the device, if the device still holds it,
	// and records reason. It reports whether it changed anything.
	Prune(ctx context.Context, userID, deviceID, token, reason string) (bool, error)
}

// Observer is told what deliveries do, for metrics. Its methods are called
// concurrently.
type Observer interface {
	// FCMSend is called after every SendToTokens call (dry runs included)
	// with how long it took, retries included, and how many tokens it had.
	FCMSend(d time.Duration, tokens int)
	// Delivered counts the outcomes of a send (never a dry run) per token.
	Delivered(sent, failed, pruned int)
	// Pruned is called for every token the Directory unbound, with the FCM
	// error code that condemned it.
	Pruned(code string)
}

type nopObserver struct{}

func (nopObserver) FCMSend(time.Duration, int) {}
func (nopObserver) Delivered(int, int, int)    {}
func (nopObserver) Pruned(string)              {}

// DelivererConfig configures a Deliverer.
type DelivererConfig struct {
	// Client sends; required. In ModeFormatOnly every delivery fails with
	// ErrNotConfigured.
	Client *Client
	// Directory finds devices and prunes dead tokens; required.
	Directory Directory
	// Observer, if set, is told what deliveries do.
	Observer Observer
	// Logger receives a line per delivery whose failures are not the
	// token's fault (default: discarded).
	Logger *slog.Logger
	// Lookups bounds the concurrent Prune calls of one delivery (default
	// DefaultLookups). Sends are bounded by Config.Concurrency.
	Lookups int
}

// Deliverer sends a message to every pushable device of one or many users
// and prunes the tokens FCM says are dead. It is safe for concurrent use.
type Deliverer struct {
	client  *Client
	dir     Directory
	obs     Observer
	log     *slog.Logger
	lookups int
}

// NewDeliverer returns a Deliverer for cfg.
func NewDeliverer(cfg DelivererConfig) (*Deliverer, error) {
	if cfg.Client == nil || cfg.Directory == nil {
		return nil, fmt.Errorf("%w: Deliverer needs a Client and a Directory", ErrConfig)
	}
	if cfg.Lookups < 0 {
		return nil, fmt.Errorf("%w: Lookups must not be negative", ErrConfig)
	}
	setDefault(&cfg.Lookups, DefaultLookups)
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Deliverer{client: cfg.Client, dir: cfg.Directory, obs: cfg.Observer, log: cfg.Logger, lookups: cfg.Lookups}, nil
}

// Report is what one delivery to one user did. Every device ends up in
// exactly one of Sent, Failed and Pruned.
type Report struct {
	UserID string
	// PushID is the ID every message of the push carried (PushIDKey).
	PushID string
	// Err, set by DeliverMany only, wraps ErrUnknownUser when there is no
	// such user; the counts are then zero.
	Err error
	// Devices is how many pushable devices the user had.
	Devices int
	// Sent counts the devices FCM accepted the message for.
	Sent int
	// Failed counts the devices FCM did not take the message for, after
	// any retries, whose token is kept. In a dry run it includes the dead
	// tokens, which a dry run does not prune.
	Failed int
	// Pruned counts the devices whose token FCM said is dead: they are
	// unbound and will not be pushed to again (a store failure to unbind
	// one is logged; the next delivery tries again).
	Pruned int
	// Results has one entry per device, in no particular order.
	Results []DeviceResult
}

// DeviceResult is the outcome of a delivery to one device.
type DeviceResult struct {
	DeviceID string
	// MessageID is FCM's name for the message; empty on failure.
	MessageID string
	// Code is FCM's error code (UNREGISTERED, INTERNAL, ...), UNAVAILABLE
	// when no answer came, or TOKEN_MALFORMED for a token never sent;
	// empty on success.
	Code string
	// Message says what went wrong, never quoting the token.
	Message string
	// Class is what the failure means; ClassNone on success.
	Class Class
	// Attempts is how many times the token was handed to FCM.
	Attempts int
	// Pruned reports whether the token was unbound because FCM said it is
	// dead (never in a dry run).
	Pruned bool
}

// Deliver sends msg to every pushable device of the user, or with dryRun has
// FCM validate it for each of them without delivering it, and prunes the
// tokens FCM says are dead (not in a dry run). Before anything is sent or
// looked up, it refuses a message CheckMessage refuses (ErrPayloadInvalid)
// and any message in ModeFormatOnly (ErrNotConfigured). An unknown user is
// an error wrapping ErrUnknownUser; a user without pushable devices gets an
// empty Report.
//
// Failures of single tokens are in the Report, not the error: once the
// message has gone to FCM the error is nil, even if ctx ended meanwhile
// (those tokens fail as UNAVAILABLE). SendToTokens has retried the tokens
// worth retrying by then.
func (d *Deliverer) Deliver(ctx context.Context, userID string, msg *Message, dryRun bool) (Report, error) {
	return d.DeliverIncluding(ctx, userID, msg, dryRun, nil)
}

// DeliverIncluding is Deliver that also sends to also, devices of the user
// the Directory may no longer list (one whose session was just revoked),
// unless they are listed with the same token.
func (d *Deliverer) DeliverIncluding(ctx context.Context, userID string, msg *Message, dryRun bool, also []Target) (Report, error) {
	reports, err := d.deliver(ctx, []string{userID}, msg, dryRun, also)
	if err != nil {
		return Report{}, err
	}
	if reports[0].Err != nil {
		return Report{}, reports[0].Err
	}
	return reports[0], nil
}

// DeliverMany is Deliver for up to MaxUsers users at once, in one fan-out
// to FCM. It returns one Report per distinct user ID, in the order of their
// first appearance; an unknown user gets a Report whose Err wraps
// ErrUnknownUser rather than failing the others. It fails as a whole, with
// nothing sent, when the message is refused, in ModeFormatOnly, or when the
// Directory fails for any user.
func (d *Deliverer) DeliverMany(ctx context.Context, userIDs []string, msg *Message, dryRun bool) ([]Report, error) {
	if len(userIDs) == 0 || len(userIDs) > MaxUsers {
		return nil, fmt.Errorf("push: deliver: %d users, want 1 to %d", len(userIDs), MaxUsers)
	}
	return d.deliver(ctx, userIDs, msg, dryRun, nil)
}

// deliver sends to the users' pushable devices; also, if any, are more
// devices of the first user.
func (d *Deliverer) deliver(ctx context.Context, userIDs []string, msg *Message, dryRun bool, also []Target) ([]Report, error) {
	if err := CheckMessage(msg); err != nil {
		return nil, err
	}
	if d.client.Mode() == ModeFormatOnly {
		return nil, fmt.Errorf("push: deliver: %w", ErrNotConfigured)
	}
	users := distinct(userIDs)
	targets, err := d.lookup(ctx, users)
	if err != nil {
		return nil, err
	}
	if targets[0].err == nil {
		targets[0].targets = including(targets[0].targets, also)
	}
	id := newPushID()
	msg = withPushID(msg, id)

	reports := make([]Report, len(users))
	var tokens []string
	var owner []int // owner[i] is the user of tokens[i]
	for u, user := range users {
		reports[u].UserID, reports[u].PushID = user, id
		if errors.Is(targets[u].err, ErrUnknownUser) {
			reports[u].Err = targets[u].err
			continue
		}
		reports[u].Devices = len(targets[u].targets)
		reports[u].Results = make([]DeviceResult, 0, len(targets[u].targets))
		for _, t := range targets[u].targets {
			tokens = append(tokens, t.Token)
			owner = append(owner, u)
		}
	}
	if len(tokens) == 0 {
		return reports, nil
	}

	start := time.Now() // the monotonic clock: a latency, not a date
	results, err := d.client.SendToTokens(ctx, tokens, msg, dryRun)
	d.obs.FCMSend(time.Since(start), len(tokens))
	if err != nil {
		return nil, err
	}

	// The targets of each user were appended in order, so walking the
	// results in order meets each user's targets in order too.
	next := make([]int, len(users))
	var dead []prune
	for i, r := range results {
		u := owner[i]
		t := targets[u].targets[next[u]]
		next[u]++
		dr := DeviceResult{DeviceID: t.DeviceID, MessageID: r.MessageID, Class: r.Class, Attempts: r.Attempts}
		rep := &reports[u]
		switch {
		case r.Err == nil:
			rep.Sent++
		case r.Class == ClassPrune && !dryRun:
			dr.Code, dr.Message = describe(r.Err)
			dr.Pruned = true
			rep.Pruned++
			dead = append(dead, prune{userID: rep.UserID, target: t, code: dr.Code})
		default:
			dr.Code, dr.Message = describe(r.Err)
			rep.Failed++
		}
		rep.Results = append(rep.Results, dr)
	}
	d.prune(ctx, dead)
	if !dryRun {
		var sent, failed, pruned int
		for _, r := range reports {
			sent, failed, pruned = sent+r.Sent, failed+r.Failed, pruned+r.Pruned
		}
		d.obs.Delivered(sent, failed, pruned)
	}
	d.logReported(reports)
	return reports, nil
}

// including is targets and those of also whose token none of them has.
func including(targets, also []Target) []Target {
	for _, a := range also {
		if !slices.ContainsFunc(targets, func(t Target) bool { return t.Token == a.Token }) {
			targets = append(targets, a)
		}
	}
	return targets
}

// lookedUp is a user's targets, or why there are none.
type lookedUp struct {
	targets []Target
	err     error
}

// lookup asks the Directory for every user's targets at once. An unknown
// user is recorded; any other failure fails the whole lookup, since nothing
// has been sent yet.
func (d *Deliverer) lookup(ctx context.Context, users []string) ([]lookedUp, error) {
	found, err := d.dir.Pushable(ctx, users)
	if err != nil {
		return nil, fmt.Errorf("push: deliver: devices: %w", err)
	}
	out := make([]lookedUp, len(users))
	for u, id := range users {
		targets, ok := found[id]
		if !ok {
			out[u].err = fmt.Errorf("push: user %s: %w", id, ErrUnknownUser)
			continue
		}
		out[u].targets = targets
	}
	return out, nil
}

// prune is one token to unbind.
type prune struct {
	userID string
	target Target
	code   string
}

// prune unbinds dead tokens, Lookups at a time. A failure is logged, not
// returned: the message went out, and the next delivery to the dead token
// will condemn it again.
func (d *Deliverer) prune(ctx context.Context, dead []prune) {
	if len(dead) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pruneTimeout)
	defer cancel()
	sem := make(chan struct{}, d.lookups)
	var wg sync.WaitGroup
	for _, p := range dead {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			changed, err := d.dir.Prune(ctx, p.userID, p.target.DeviceID, p.target.Token, "FCM: "+p.code)
			switch {
			case err != nil:
				d.log.Warn("push: pruning a dead token failed", "user_id", p.userID, "device_id", p.target.DeviceID, "code", p.code, "err", err)
			case changed:
				d.obs.Pruned(p.code)
			}
		})
	}
	wg.Wait()
}

// logReported logs, once per delivery, the failures that are the project's
// or the request's fault rather than the tokens': retrying cannot help
// them, so someone has to look.
func (d *Deliverer) logReported(reports []Report) {
	codes := map[string]int{}
	for _, r := range reports {
		for _, dr := range r.Results {
			if dr.Class == ClassReport {
				codes[dr.Code]++
			}
		}
	}
	if len(codes) > 0 {
		d.log.Warn("push: FCM refused messages for reasons that are not the tokens'", "codes", codes)
	}
}

// describe names the failure err for a DeviceResult.
func describe(err error) (code, message string) {
	var fe *FCMError
	switch {
	case errors.As(err, &fe):
		code = fe.Code
		if code == "" {
			code = "UNAVAILABLE" // no answer at all: a timeout or the network
		}
		return code, fe.Err.Error()
	case errors.Is(err, ErrTokenMalformed):
		return "TOKEN_MALFORMED", err.Error()
	}
	return "UNKNOWN", err.Error()
}

// distinct returns ids without repeats, in the order of first appearance.
func distinct(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
