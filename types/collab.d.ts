/**
 * collab — typed Socket.IO protocol for browsers.
 *
 * The payloads the collab worker exchanges with socket.io-client 4.x, in
 * socket.io's `ServerToClientEvents` / `ClientToServerEvents` style.  The
 * protocol itself is described in docs/protocol.md; this file follows the
 * worker as built (sql/, src/session.c, src/rooms.c, src/payloads.c,
 * src/errors.c).  test/types/check-dts.mjs checks the event names, error
 * codes and event payload fields against that code.
 *
 * @example
 * import { io, Socket } from "socket.io-client";
 * import type { ServerToClientEvents, ClientToServerEvents } from "./collab";
 *
 * const socket = io("http://db-host:8080", {
 *   auth: { token: jwt },
 * }) as Socket<ServerToClientEvents, ClientToServerEvents>;
 */

/* ------------------------------------------------------------------------
 * Scalars
 * ------------------------------------------------------------------------ */

/**
 * An ISO 8601 time in UTC, taken from the database server's clock.
 * Event and lock times have milliseconds (`"2026-11-28T04:21:59.611Z"`);
 * `RefreshAck.expiresAt` (the JWT's `exp`) has whole seconds
 * (`"2026-11-28T05:00:00Z"`).  Parse with `new Date(s)` or `Date.parse(s)`.
 */
export type IsoTime = string;

/**
 * A resource id: `/`-separated `kind:key` segments, e.g. `"document:123"` or
 * `"document:123/tab:diagnosis"` (at most 8 segments of at most 128 bytes).
 * A malformed one is `RESOURCE_ID_INVALID`, an unknown one `RESOURCE_NOT_FOUND`.
 */
export type ResourceId = string;

/**
 * A fencing token: a positive integer that strictly increases across all lock
 * grants, also across the promotion of a standby.  Only the holder's own
 * connection ever receives it.  A PostgreSQL bigint sent as a JSON number,
 * always below 2^53 (Number.MAX_SAFE_INTEGER), so exact: epoch * 2^36 + n,
 * where the epoch names the primary that issued it.  Compare tokens, never
 * do arithmetic on them.
 */
export type FencingToken = number;

/** A permission on a resource ([access-control.md](access-control.md)). */
export type Permission = "view" | "edit" | "admin";

/** A connection's role in a room: `"editor"` holds the lock, `"viewer"` does not. */
export type Role = "editor" | "viewer";

/** How a client asks to join a room (`presence:join`'s `mode`). */
export type JoinMode = "editor" | "viewer";

/** Why a lock was freed (`lock:released`'s `reason`). */
export type LockReleaseReason =
	/** The holder sent `lock:release` (or the backend called `collab.release()`). */
	| "released"
	/** The holder left the room with `presence:leave`. */
	| "left"
	/** The holder's connection closed cleanly, or was lost and not back by the end of its grace (`collab.disconnect_grace`). */
	| "disconnected"
	/** An administrator called `collab.force_release()`. */
	| "forced"
	/** The holder lost the `edit` permission (a revoke, or `auth:refresh` with other groups). */
	| "revoked";

/** Why someone left a room (`presence:left`'s `reason`). */
export type PresenceLeftReason =
	/** The connection sent `presence:leave`. */
	| "left"
	/** The connection closed, or the worker restarted. */
	| "disconnected"
	/** The connection stopped answering Engine.IO pings. */
	| "timeout"
	/** The user lost the `view` permission, or their sessions were revoked. */
	| "revoked";

/** Why a lock was denied (`lock:denied`'s `reason`): someone holds a conflicting lock. */
export type LockDeniedReason = "held";

/**
 * Every machine-readable error code (the table in src/errors.c and
 * docs/errors.md).  Sent in failed acks, `error` events and CONNECT_ERROR data.
 */
export type ErrorCode =
	/** The connection presented no token in its auth payload. */
	| "AUTH_TOKEN_MISSING"
	/** The token is not a well-formed JWT. */
	| "AUTH_TOKEN_INVALID"
	/** The token's exp has passed (beyond the allowed leeway). */
	| "AUTH_TOKEN_EXPIRED"
	/** The token's signature does not verify with the configured key. */
	| "AUTH_SIGNATURE_INVALID"
	/** The token's alg is not accepted (none, unknown, or not matching the configured key). */
	| "AUTH_ALGORITHM_UNSUPPORTED"
	/** A claim is missing, of the wrong type, not yet valid, or does not match iss/aud. */
	| "AUTH_CLAIM_INVALID"
	/** The caller is not allowed to do this (origin, role or privilege). */
	| "FORBIDDEN"
	/** The request is malformed: a missing or ill-typed field, an unknown event. */
	| "BAD_REQUEST"
	/** The resource id does not follow the kind:key/kind:key grammar. */
	| "RESOURCE_ID_INVALID"
	/** No resource row has this id. */
	| "RESOURCE_NOT_FOUND"
	/** A resource with this id already exists (SQL API only: create_document, add_tab). */
	| "RESOURCE_EXISTS"
	/** The connection has not joined this resource's room. */
	| "NOT_JOINED"
	/** Someone else holds a conflicting editor lock. */
	| "LOCK_HELD"
	/** The caller presented no token, or one that is not the live lock of this resource. */
	| "LOCK_NOT_HELD"
	/** The presented token's lock expired before it was renewed. */
	| "LOCK_EXPIRED"
	/** The base version is not the resource's current version. */
	| "VERSION_CONFLICT"
	/** The message or content exceeds the configured size limit. */
	| "PAYLOAD_TOO_LARGE"
	/** The connection sent more messages than its rate limit allows, or its user already has as many connections as allowed. */
	| "RATE_LIMITED"
	/** An unexpected server error; the request had no effect. */
	| "INTERNAL"
	/** The user's sessions were revoked after this token was issued (or it has no `iat`): sign in again. */
	| "AUTH_TOKEN_REVOKED"
	/** The server could not take the request in time; it had no effect and may be retried. */
	| "BUSY";

/* ------------------------------------------------------------------------
 * Shared objects
 * ------------------------------------------------------------------------ */

/** A person, as the JWT identified them. */
export interface UserRef {
	/** The user id: the JWT's `sub` claim. */
	userId: string;
	/** The display name: `name`, else `preferred_username`, else `sub` (never an e-mail address). */
	username: string;
}

/** One connection in a room, as presence shows it. */
export interface PresenceUser {
	/** The user id: the JWT's `sub` claim. */
	userId: string;
	/** The display name shown to others. */
	username: string;
	/** The connection's id (its `socket.id`); one user may have several. */
	connectionId: string;
	/** Whether this connection holds the room's lock. */
	role: Role;
	/** When the connection joined this room. */
	joinedAt: IsoTime;
	/** *Extension*: the room this connection is in (a tab, when shown in a document's presence). */
	resourceId: ResourceId;
}

/** A live editor lock. */
export interface LockInfo {
	/** The locked resource; may be an ancestor or descendant of the one asked about. */
	resourceId: ResourceId;
	/** Who holds it. */
	holder: UserRef;
	/** When it was granted. */
	acquiredAt: IsoTime;
	/** When it expires unless renewed (`lock:renew`, or any save). */
	expiresAt: IsoTime;
	/** The fencing token; present only in the holder's own copy. */
	token?: FencingToken;
	/** Present while the holder's connection is lost: the lock is kept for them until then (`lock:suspended`). */
	suspendedUntil?: IsoTime;
}

/** A lock as its holder sees it: with the fencing token. */
export interface OwnLockInfo extends LockInfo {
	/** The fencing token to present with `doc:save`. */
	token: FencingToken;
}

/* ------------------------------------------------------------------------
 * Client -> server payloads
 * ------------------------------------------------------------------------ */

/** The CONNECT auth payload: `io(url, { auth: { token } })`. */
export interface AuthPayload {
	/** A JWT (HS256, RS256 or ES256) whose `sub` is the user id; `exp` is required. */
	token: string;
}

/** `presence:join`: enter a resource's room. */
export interface JoinRequest {
	/** The resource to join. */
	resourceId: ResourceId;
	/** `"editor"` takes the lock when it is free (else joins as viewer); `"viewer"` never does. */
	mode: JoinMode;
}

/** A command on one resource (`presence:leave`, `lock:acquire`, `lock:renew`, `lock:release`, `lock:request`). */
export interface ResourceRequest {
	/** The resource (room) the command is about. */
	resourceId: ResourceId;
}

/** `presence:leave`: leave a room (releasing this connection's lock on it). */
export type LeaveRequest = ResourceRequest;
/** `lock:acquire`: a viewer in the room asks to become editor. */
export type AcquireRequest = ResourceRequest;
/** `lock:renew`: extend this connection's lock by `collab.lock_ttl`. */
export type RenewRequest = ResourceRequest;
/** `lock:release`: free the lock and stay in the room as viewer. */
export type ReleaseRequest = ResourceRequest;
/** *Extension* `lock:request` (edit hand-off): a viewer in the room asks the holder for the lock. */
export type HandOffRequest = ResourceRequest;

/** `doc:save`: store new content under this connection's live lock. */
export interface SaveRequest {
	/** The resource to save (a document lock covers its tabs). */
	resourceId: ResourceId;
	/** The new content, at most `collab.max_content_size` bytes. */
	content: string;
	/** When given, must be the current version, else `VERSION_CONFLICT`. */
	baseVersion?: number;
	/** *Extension*: when given, must be the token of the connection's current lock, else `LOCK_EXPIRED` / `LOCK_NOT_HELD`. */
	token?: FencingToken;
	/**
	 * A restore: the earlier version whose content this is.  `content` must be
	 * exactly that revision's (else `BAD_REQUEST`, and nothing is saved); the
	 * new revision records it, and `doc:saved` carries it.  A non-negative integer.
	 */
	restoredFrom?: number;
}

/** `doc:history`: a page of a resource's revisions, newest first (needs `view`; the read is in the access trail). */
export interface HistoryRequest {
	/** The resource whose revisions are listed. */
	resourceId: ResourceId;
	/** Only versions below this one (at least 1): the previous page's `nextBefore`.  Absent or `null`: from the newest. */
	before?: number | null;
	/** At most this many revisions, 1 to 500; absent or `null`: 50. */
	limit?: number | null;
}

/** `doc:revision`: one revision with its content (needs `view`; the read is in the access trail). */
export interface RevisionRequest {
	/** The resource. */
	resourceId: ResourceId;
	/** The version (0 or more); one without a revision (never saved, or purged) is `RESOURCE_NOT_FOUND`. */
	version: number;
}

/** *Extension* `auth:refresh`: a new JWT for the same user extends the session. */
export interface RefreshRequest {
	/** The new JWT; its `sub` must be the connection's user. */
	token: string;
}

/* ------------------------------------------------------------------------
 * Acknowledgements
 * ------------------------------------------------------------------------ */

/** The error object of a failed command. */
export interface FailureError {
	/** The machine-readable code. */
	code: ErrorCode;
	/** A sentence for a person. */
	message: string;
}

/** A failed command's acknowledgement. */
export interface Failure {
	/** Always `false` for a failure. */
	ok: false;
	/** What went wrong. */
	error: FailureError;
}

/** *Extension*: `lock:acquire` (or `lock:request` on a free lock) refused because someone holds a conflicting lock. */
export interface LockHeldFailure extends Failure {
	/** The `LOCK_HELD` error. */
	error: { /** Always `"LOCK_HELD"`. */ code: "LOCK_HELD"; /** A sentence naming the holder. */ message: string };
	/** The conflicting lock (without token). */
	lock: LockInfo;
}

/** A successful command with nothing more to say (`presence:leave`, `lock:release`). */
export interface OkAck {
	/** Always `true` for a success. */
	ok: true;
}

/** `presence:leave` succeeded. */
export type LeaveAck = OkAck;
/** `lock:release` succeeded. */
export type ReleaseAck = OkAck;

/** `presence:join` succeeded. */
export interface JoinAck {
	/** Always `true` for a success. */
	ok: true;
	/** `"editor"` if this connection holds the lock, else `"viewer"` (also after an auto-downgrade). */
	role: Role;
	/** The new lock (with token) when granted; the conflicting holder's lock (without token) when downgraded; as viewer, the lock on this very resource (not an ancestor's) or `null`. */
	lock: LockInfo | null;
	/** Everyone in the room of the resource and of its descendants, this connection included. */
	users: PresenceUser[];
	/** *Extension*: the resource as stored now, with its content. */
	resource: ResourceState;
	/** *Extension*: the resource's children (a document's tabs), oldest first, with their versions and live locks; whoever may view a resource may view its children (grants are inherited). */
	children: ChildResource[];
	/** What this user may do on the resource now: `"view"`, and `"edit"` and `"admin"` where granted (each implies the ones before it). Without `"edit"`, an editor's join is a viewer's. */
	permissions: Permission[];
	/** *Extension*: how long the server keeps this connection's locks after its connection is lost uncleanly (`collab.disconnect_grace`), in milliseconds; 0: released at once. */
	disconnectGraceMs: number;
}

/** *Extension*: a resource as stored, in a `presence:join` acknowledgement. */
export interface ResourceState {
	/** Its id. */
	resourceId: ResourceId;
	/** The kind of its last segment, e.g. `"document"` or `"tab"`. */
	kind: string;
	/** Its title, if it has one. */
	title: string | null;
	/** The current version: 0 before the first save, then one more per save. */
	version: number;
	/** The current content (what the last save stored; empty before the first). */
	content: string;
	/** Who saved it last, or `null` before the first save. */
	savedBy: UserRef | null;
	/** When it was saved last (ISO 8601, UTC), or `null`. */
	savedAt: string | null;
}

/** *Extension*: a child resource (a tab) in a `presence:join` acknowledgement. */
export interface ChildResource {
	/** Its id. */
	resourceId: ResourceId;
	/** The kind of its last segment, e.g. `"tab"`. */
	kind: string;
	/** Its title, if it has one. */
	title: string | null;
	/** Its current version. */
	version: number;
	/** The live lock on it (without token), or `null`. */
	lock: LockInfo | null;
}

/** `lock:acquire` succeeded. */
export interface AcquireAck {
	/** Always `true` for a success. */
	ok: true;
	/** The granted lock, with its token. */
	lock: OwnLockInfo;
}

/** `lock:renew` succeeded. */
export interface RenewAck {
	/** Always `true` for a success. */
	ok: true;
	/** The renewed lock with its new `expiresAt` and its (unchanged) token. */
	lock: OwnLockInfo;
}

/**
 * *Extension*: `lock:request` queued because someone holds the lock.  The
 * holder gets `lock:requested`; when the lock is freed it goes to the first
 * requester still in the room, who then gets `lock:acquired` with its token.
 * (When the lock was free, `lock:request` answers like `lock:acquire`.)
 */
export interface HandOffAck {
	/** Always `true` for a success. */
	ok: true;
	/** Always `true`: the request is queued. */
	requested: true;
	/** The holder's lock (on the resource, an ancestor or a descendant), without token. */
	lock: LockInfo;
}

/** `doc:save` succeeded. */
export interface SaveAck {
	/** Always `true` for a success. */
	ok: true;
	/** The resource's new version number. */
	version: number;
}

/** A revision in a `doc:history` page (no content). */
export interface RevisionSummary {
	/** The version this save produced. */
	version: number;
	/** Who saved it; `null` only for the first revision of content that existed before revisions were kept and was never saved by a user. */
	savedBy: UserRef | null;
	/** When it was saved (milliseconds, like `doc:saved`'s `savedAt`). */
	savedAt: IsoTime;
	/** The size of its content in bytes (UTF-8). */
	size: number;
	/** A restore: the version whose content it brought back (absent otherwise). */
	restoredFrom?: number;
}

/** `doc:history` succeeded. */
export interface HistoryAck {
	/** Always `true` for a success. */
	ok: true;
	/** The page, newest first; empty when there is nothing below `before`. */
	revisions: RevisionSummary[];
	/** The `before` of the next (older) page, or `null` when this page is the last. */
	nextBefore: number | null;
}

/** A revision with its content (`doc:revision`). */
export interface Revision {
	/** The version this save produced. */
	version: number;
	/** The content saved, in full. */
	content: string;
	/** Who saved it (`null` as in `RevisionSummary`). */
	savedBy: UserRef | null;
	/** When it was saved. */
	savedAt: IsoTime;
	/** A restore: the version whose content it brought back (absent otherwise). */
	restoredFrom?: number;
}

/** `doc:revision` succeeded. */
export interface RevisionAck {
	/** Always `true` for a success. */
	ok: true;
	/** The revision asked for. */
	revision: Revision;
}

/** *Extension*: `auth:refresh` succeeded. */
export interface RefreshAck {
	/** Always `true` for a success. */
	ok: true;
	/** The new end of the session (the new token's `exp`, whole seconds). */
	expiresAt: IsoTime;
}

/* ------------------------------------------------------------------------
 * Server -> client payloads
 * ------------------------------------------------------------------------ */

/** `presence:state`: the room's members, sent to the joiner after each join. */
export interface PresenceState {
	/** The room joined. */
	resourceId: ResourceId;
	/** Everyone in the room of the resource and of its descendants. */
	users: PresenceUser[];
}

/** `presence:joined`: someone joined (or re-joined with another role). */
export interface PresenceJoined {
	/** The room joined (sent to it and its ancestors' rooms). */
	resourceId: ResourceId;
	/** Who joined. */
	user: PresenceUser;
}

/** `presence:left`: someone left. */
export interface PresenceLeft {
	/** The room left (sent to it and its ancestors' rooms). */
	resourceId: ResourceId;
	/** Who left, as they were in the room. */
	user: PresenceUser;
	/** Why they left. */
	reason: PresenceLeftReason;
}

/** `lock:acquired`: a lock was granted (sent to every room on the resource's path). */
export interface LockAcquired {
	/** The locked resource. */
	resourceId: ResourceId;
	/** Who holds it now. */
	holder: UserRef;
	/** When it was granted. */
	acquiredAt: IsoTime;
	/** When it expires unless renewed. */
	expiresAt: IsoTime;
	/** The fencing token; only in the holder's own connection's copy. */
	token?: FencingToken;
}

/** `lock:denied`: the requester (only) could not take the lock and is a viewer. */
export interface LockDenied {
	/** The resource the requester asked for. */
	resourceId: ResourceId;
	/** Who holds the conflicting lock. */
	holder: UserRef;
	/** When the conflicting lock expires unless renewed. */
	expiresAt: IsoTime;
	/** Always `"held"`. */
	reason: LockDeniedReason;
	/** *Extension*: who asked (this connection's user). */
	requester: UserRef;
	/** *Extension*: where the conflicting lock is (the resource, an ancestor or a descendant). */
	holderResourceId: ResourceId;
}

/** *Extension* `lock:requested`: to the holder only, someone asked for the lock (`lock:request`). */
export interface LockRequested {
	/** The resource asked for. */
	resourceId: ResourceId;
	/** Who asked. */
	requester: UserRef;
	/** When they asked. */
	requestedAt: IsoTime;
}

/** `lock:released`: a lock was freed (sent to every room on the path). */
export interface LockReleased {
	/** The resource that was locked. */
	resourceId: ResourceId;
	/** Who held it. */
	previousHolder: UserRef;
	/** Why it was freed. */
	reason: LockReleaseReason;
	/** *Extension*: when it was freed. */
	releasedAt: IsoTime;
}

/** `lock:expired`: a lock's TTL passed without renewal (sent to every room on the path, former holder included). */
export interface LockExpired {
	/** The resource that was locked. */
	resourceId: ResourceId;
	/** Who held it. */
	previousHolder: UserRef;
	/** When it expired (the lease's expiry, not when it was swept). */
	expiredAt: IsoTime;
}

/**
 * `lock:suspended`: the holder's connection was lost uncleanly; the lock stays
 * theirs (nobody else acquires it or saves) until `until`, unless its TTL
 * ends first (`lock:expired`).  Then `lock:resumed`, or `lock:released` with
 * reason `"disconnected"` (sent to every room on the path).
 */
export interface LockSuspended {
	/** The locked resource. */
	resourceId: ResourceId;
	/** Who holds it. */
	holder: UserRef;
	/** The end of the grace (`collab.disconnect_grace` after the loss). */
	until: IsoTime;
	/** When the lock expires unless renewed; its TTL keeps running meanwhile. */
	expiresAt: IsoTime;
}

/**
 * `lock:resumed`: a suspended lock's holder is back, on its connection, or
 * joining again from a new one, which took the lock over with a new token
 * (its own acknowledgement carries it) (sent to every room on the path).
 */
export interface LockResumed {
	/** The locked resource. */
	resourceId: ResourceId;
	/** Who holds it. */
	holder: UserRef;
	/** When the lock expires unless renewed. */
	expiresAt: IsoTime;
}

/** `doc:saved`: new content was stored (sent to every room on the path). */
export interface DocSaved {
	/** The saved resource. */
	resourceId: ResourceId;
	/** Its new version number. */
	version: number;
	/** Who saved it. */
	savedBy: UserRef;
	/** When it was saved. */
	savedAt: IsoTime;
	/** A restore: the earlier version whose content this save brought back (absent otherwise). */
	restoredFrom?: number;
}

/** `access:changed`: this connection's permissions on a resource whose room it is in changed. */
export interface AccessChanged {
	/** The room's resource. */
	resourceId: ResourceId;
	/** What the connection may do there now, as in the join ack; `[]`: nothing (`access:revoked` follows). */
	permissions: Permission[];
}

/** `access:revoked`: this connection may no longer view the resource, and left its room. */
export interface AccessRevoked {
	/** The room left. */
	resourceId: ResourceId;
}

/**
 * `error`: a command without ack callback failed, or the session ended
 * (`AUTH_TOKEN_EXPIRED`, `AUTH_TOKEN_REVOKED`, `PAYLOAD_TOO_LARGE`).
 */
export interface ErrorEvent {
	/** The machine-readable code. */
	code: ErrorCode;
	/** A sentence for a person. */
	message: string;
	/** The resource the failed command was about, when known. */
	resourceId?: ResourceId;
}

/**
 * The `data` of a refused CONNECT: socket.io-client's `connect_error` has it
 * as `err.data` (`{ code: "AUTH_TOKEN_EXPIRED" }`, ...).
 */
export interface ConnectErrorData {
	/** Why the connection was refused (an `AUTH_*` code such as `AUTH_TOKEN_REVOKED`, `FORBIDDEN`, `BAD_REQUEST` or `INTERNAL`). */
	code: ErrorCode;
}

/**
 * The error of socket.io-client's `connect_error`.  `data` is set when the
 * server refused the CONNECT; transport errors (server unreachable) have none.
 */
export interface ConnectError extends Error {
	/** The server's refusal, when it refused. */
	data?: ConnectErrorData;
}

/**
 * `session:ready` *(extension)*: sent right after every CONNECT reply, with an
 * offset, so that socket.io-client can recover the session after a brief
 * loss (connection state recovery, docs/protocol.md).  After a recovery
 * (`socket.recovered === true`) the events missed meanwhile follow it.
 */
export interface SessionReady {
	/** The connection id (`socket.id`), the same after a recovery. */
	connectionId: string;
	/** Whether this CONNECT took up the session lost before (as `socket.recovered`). */
	recovered: boolean;
}

/**
 * An event's offset: every event of a room, `presence:state` and
 * `session:ready` carry one as an extra last argument after the payload
 * (`(payload, offset) => ...`), a string of digits that grows with every
 * event.  socket.io-client keeps the last one and sends it back, with the
 * CONNECT reply's `pid`, when it reconnects; a UI has no need of it.
 */
export type EventOffset = string;

/* ------------------------------------------------------------------------
 * The events, for Socket<ServerToClientEvents, ClientToServerEvents>
 * ------------------------------------------------------------------------ */

/** Events the worker sends (`socket.on(...)`). */
export interface ServerToClientEvents {
	/** To the joiner, after each `presence:join`: who is in the room. */
	"presence:state": (p: PresenceState) => void;
	/** To the room and its ancestors' rooms: someone joined. */
	"presence:joined": (p: PresenceJoined) => void;
	/** To the room and its ancestors' rooms: someone left. */
	"presence:left": (p: PresenceLeft) => void;
	/** To every room on the path: a lock was granted (with `token` in the holder's copy). */
	"lock:acquired": (p: LockAcquired) => void;
	/** To the requester only: the lock is held by someone else. */
	"lock:denied": (p: LockDenied) => void;
	/** *Extension*: to the holder only: someone asked for the lock. */
	"lock:requested": (p: LockRequested) => void;
	/** To every room on the path: a lock was freed. */
	"lock:released": (p: LockReleased) => void;
	/** To every room on the path, former holder included: a lock expired. */
	"lock:expired": (p: LockExpired) => void;
	/** To every room on the path: the holder's connection was lost; the lock is kept for them until `until`. */
	"lock:suspended": (p: LockSuspended) => void;
	/** To every room on the path: the holder of a suspended lock is back. */
	"lock:resumed": (p: LockResumed) => void;
	/** To every room on the path: a save was stored. */
	"doc:saved": (p: DocSaved) => void;
	/** To one connection: its permissions on the resource of one of its rooms changed. */
	"access:changed": (p: AccessChanged) => void;
	/** To one connection: it may no longer view the resource, and is out of its room (also on a recovery). */
	"access:revoked": (p: AccessRevoked) => void;
	/** To one connection: a failure without ack callback, or the end of the session. */
	"error": (p: ErrorEvent) => void;
	/** *Extension*: right after the CONNECT reply; carries the first offset. */
	"session:ready": (p: SessionReady) => void;
}

/** Events the worker accepts (`socket.emit(...)`), each with an optional ack callback. */
export interface ClientToServerEvents {
	/** Join a resource's room as editor or viewer. */
	"presence:join": (p: JoinRequest, ack?: (r: JoinAck | Failure) => void) => void;
	/** Leave a room, releasing this connection's lock on it. */
	"presence:leave": (p: LeaveRequest, ack?: (r: LeaveAck | Failure) => void) => void;
	/** As a viewer in the room, ask for the lock. */
	"lock:acquire": (p: AcquireRequest, ack?: (r: AcquireAck | LockHeldFailure | Failure) => void) => void;
	/** Extend this connection's lock by `collab.lock_ttl`. */
	"lock:renew": (p: RenewRequest, ack?: (r: RenewAck | Failure) => void) => void;
	/** Free this connection's lock and stay in the room as viewer. */
	"lock:release": (p: ReleaseRequest, ack?: (r: ReleaseAck | Failure) => void) => void;
	/** *Extension*: as a viewer in the room, ask the holder to hand the lock on (granted at once when free). */
	"lock:request": (p: HandOffRequest, ack?: (r: HandOffAck | AcquireAck | LockHeldFailure | Failure) => void) => void;
	/** Save content under this connection's live lock (a restore names the version it brings back). */
	"doc:save": (p: SaveRequest, ack?: (r: SaveAck | Failure) => void) => void;
	/** A page of a resource's revisions, newest first; needs `view`, not the room. */
	"doc:history": (p: HistoryRequest, ack?: (r: HistoryAck | Failure) => void) => void;
	/** One revision with its content; needs `view`, not the room. */
	"doc:revision": (p: RevisionRequest, ack?: (r: RevisionAck | Failure) => void) => void;
	/** *Extension*: extend the session with a new token for the same user. */
	"auth:refresh": (p: RefreshRequest, ack?: (r: RefreshAck | Failure) => void) => void;
}

/**
 * `ClientToServerEvents` with every ack callback required, for socket.io's
 * promise and timeout APIs, whose types need the callback to be the last,
 * non-optional parameter:
 *
 * @example
 * const acked = socket as unknown as Socket<ServerToClientEvents, ClientToServerEventsWithAck>;
 * const ack = await acked.emitWithAck("doc:save", { resourceId, content });  // SaveAck | Failure
 * acked.timeout(5000).emit("lock:renew", { resourceId }, (err, ack) => { ... });
 *
 * (`socket.timeout(ms).emitWithAck(...)` resolves to `any` in socket.io-client
 * 4.8's own types, whatever the event map.)
 */
export type ClientToServerEventsWithAck = {
	[K in keyof ClientToServerEvents]: ClientToServerEvents[K] extends (...args: infer A) => infer R
		? (...args: Required<A>) => R
		: never;
};
