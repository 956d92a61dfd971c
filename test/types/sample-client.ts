/*
 * A realistic collab browser client, compiled (never run) by
 * `tsc -p test/types/tsconfig.json` against types/collab.d.ts and
 * socket.io-client's own types.  If the .d.ts drifts from what a UI needs,
 * or becomes too loose (see the @ts-expect-error lines), this stops compiling.
 */
import { io, Socket } from "socket.io-client";
import type {
	AcquireAck,
	ClientToServerEvents,
	ClientToServerEventsWithAck,
	ConnectError,
	ConnectErrorData,
	DocSaved,
	ErrorCode,
	ErrorEvent,
	Failure,
	HistoryAck,
	IsoTime,
	JoinAck,
	JoinRequest,
	LockDenied,
	LockHeldFailure,
	LockInfo,
	LockReleaseReason,
	PresenceLeftReason,
	PresenceUser,
	RenewAck,
	Revision,
	RevisionSummary,
	SaveAck,
	SaveRequest,
	ServerToClientEvents,
	UserRef,
	AccessChanged,
	AccessRevoked,
} from "../../types/collab";

type CollabSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

/** true unless T is any: lets the compiler prove a type was inferred. */
type NotAny<T> = 0 extends 1 & T ? false : true;

/** Where the UI shows what happens. */
interface View {
	showUsers(resourceId: string, users: PresenceUser[]): void;
	showLock(resourceId: string, holder: UserRef | null, expiresAt: IsoTime | null): void;
	toast(text: string): void;
	reloadContent(resourceId: string, version: number): void;
	askForLogin(reason: ErrorCode | "unreachable"): void;
}

/** What the editor knows about the tab it edits. */
interface EditState {
	resourceId: string;
	role: "editor" | "viewer";
	token: number | null;
	version: number;
	lock: LockInfo | null;
	users: Map<string, PresenceUser>;
}

function isFailure(r: { ok: boolean }): r is Failure {
	return r.ok === false;
}

function describe(user: UserRef): string {
	return `${user.username} (${user.userId})`;
}

const releaseText: Record<LockReleaseReason, string> = {
	released: "released the lock",
	left: "left the document",
	disconnected: "lost the connection",
	forced: "had the lock taken away by an administrator",
	revoked: "may no longer edit",
};

const leftText: Record<PresenceLeftReason, string> = {
	left: "left",
	disconnected: "disconnected",
	timeout: "timed out",
	revoked: "may no longer view it",
};

export class CollabClient {
	readonly socket: CollabSocket;
	private state: EditState | null = null;
	private renewTimer: ReturnType<typeof setInterval> | undefined;

	constructor(url: string, private getToken: () => Promise<string>, private view: View) {
		this.socket = io(url, {
			transports: ["websocket"],
			autoConnect: false,
			// evaluated on every (re)connect, so a reconnect uses a fresh token
			auth: (cb) => {
				void this.getToken().then((token) => cb({ token }));
			},
		}) as CollabSocket;
		this.wire();
	}

	connect(): void {
		this.socket.connect();
	}

	private wire(): void {
		const s = this.socket;

		s.on("connect", () => {
			// rooms do not survive a reconnection: join again
			if (this.state) this.join(this.state.resourceId);
		});

		s.on("connect_error", (err) => {
			const data: ConnectErrorData | undefined = (err as ConnectError).data;
			if (data === undefined) {
				this.view.askForLogin("unreachable");
				return;
			}
			switch (data.code) {
				case "AUTH_TOKEN_EXPIRED":
				case "AUTH_TOKEN_MISSING":
				case "AUTH_TOKEN_INVALID":
				case "AUTH_SIGNATURE_INVALID":
				case "AUTH_ALGORITHM_UNSUPPORTED":
				case "AUTH_CLAIM_INVALID":
					// socket.io-client does not retry these by itself
					this.view.askForLogin(data.code);
					break;
				case "FORBIDDEN":
					this.view.toast(`this site may not connect: ${err.message}`);
					break;
				default:
					this.view.toast(`could not connect (${data.code}): ${err.message}`);
					setTimeout(() => this.socket.connect(), 5000);
			}
		});

		s.on("disconnect", (reason) => {
			this.stopRenewing();
			if (this.state) {
				this.state.role = "viewer";
				this.state.token = null;
			}
			if (reason === "io server disconnect") this.view.askForLogin("AUTH_TOKEN_EXPIRED");
		});

		s.on("presence:state", (p) => {
			if (p.resourceId !== this.state?.resourceId) return;
			this.state.users = new Map(p.users.map((u) => [u.connectionId, u]));
			this.view.showUsers(p.resourceId, p.users);
		});

		s.on("presence:joined", ({ resourceId, user }) => {
			if (!this.state || resourceId !== this.state.resourceId) return;
			this.state.users.set(user.connectionId, user);
			this.view.showUsers(resourceId, [...this.state.users.values()]);
		});

		s.on("presence:left", ({ resourceId, user, reason }) => {
			if (!this.state || resourceId !== this.state.resourceId) return;
			this.state.users.delete(user.connectionId);
			this.view.toast(`${describe(user)} ${leftText[reason]}`);
			this.view.showUsers(resourceId, [...this.state.users.values()]);
		});

		s.on("lock:acquired", (p) => {
			if (!this.state) return;
			this.state.lock = { resourceId: p.resourceId, holder: p.holder, acquiredAt: p.acquiredAt, expiresAt: p.expiresAt };
			if (p.token !== undefined && p.resourceId === this.state.resourceId) {
				// our own grant: only this copy carries the token
				this.state.token = p.token;
				this.state.role = "editor";
				this.startRenewing();
			}
			this.view.showLock(p.resourceId, p.holder, p.expiresAt);
		});

		s.on("lock:denied", (p: LockDenied) => {
			const where = p.holderResourceId === p.resourceId ? "" : ` (on ${p.holderResourceId})`;
			this.view.toast(`${describe(p.holder)} is editing${where} until ${new Date(p.expiresAt).toLocaleTimeString()}; you are a viewer`);
			if (p.reason === "held") this.view.showLock(p.resourceId, p.holder, p.expiresAt);
		});

		s.on("lock:requested", ({ resourceId, requester, requestedAt }) => {
			// only the holder hears this: offer to hand the lock on
			this.view.toast(`${describe(requester)} asked at ${requestedAt} to edit ${resourceId}; release to hand it on`);
		});

		s.on("lock:released", ({ resourceId, previousHolder, reason, releasedAt }) => {
			const st = this.state;
			if (st?.lock?.resourceId === resourceId) {
				st.lock = null;
				if (reason === "forced" && st.token !== null) {
					// an administrator took our lock: unsaved edits cannot be saved
					this.stopRenewing();
					st.token = null;
					st.role = "viewer";
				}
			}
			this.view.toast(`${describe(previousHolder)} ${releaseText[reason]} at ${releasedAt}`);
			this.view.showLock(resourceId, null, null);
		});

		s.on("lock:expired", ({ resourceId, previousHolder, expiredAt }) => {
			if (this.state?.lock?.resourceId === resourceId) {
				if (this.state.lock.holder.userId === previousHolder.userId) this.state.token = null;
				this.state.lock = null;
			}
			this.view.toast(`the lock of ${previousHolder.username} expired at ${expiredAt}`);
			this.view.showLock(resourceId, null, null);
		});

		s.on("doc:saved", (p: DocSaved) => {
			if (!this.state || p.resourceId !== this.state.resourceId) return;
			if (p.version > this.state.version) {
				this.state.version = p.version;
				this.view.reloadContent(p.resourceId, p.version);
			}
			this.view.toast(p.restoredFrom === undefined
				? `saved by ${p.savedBy.username} at ${p.savedAt}`
				: `${p.savedBy.username} restored version ${p.restoredFrom}`);
		});

		s.on("access:changed", (p: AccessChanged) => {
			const canEdit: boolean = p.permissions.includes("edit");
			this.view.toast(`${p.resourceId}: ${canEdit ? "you may edit" : "view only"} (${p.permissions.join(", ")})`);
		});

		s.on("access:revoked", (p: AccessRevoked) => {
			if (this.state?.resourceId === p.resourceId) this.state = null;
			this.view.toast(`your access to ${p.resourceId} was withdrawn`);
		});

		s.on("error", (e: ErrorEvent) => {
			const where = e.resourceId ? ` on ${e.resourceId}` : "";
			this.view.toast(`${e.code}${where}: ${e.message}`);
			if (e.code === "LOCK_EXPIRED" || e.code === "LOCK_NOT_HELD") this.stopRenewing();
		});
	}

	join(resourceId: string, mode: JoinRequest["mode"] = "editor"): void {
		this.socket.emit("presence:join", { resourceId, mode }, (ack: JoinAck | Failure) => {
			if (isFailure(ack)) {
				this.view.toast(`cannot open ${resourceId}: ${ack.error.code} ${ack.error.message}`);
				return;
			}
			this.state = {
				resourceId,
				role: ack.role,
				token: ack.role === "editor" && ack.lock?.token !== undefined ? ack.lock.token : null,
				version: this.state?.resourceId === resourceId ? this.state.version : 0,
				lock: ack.lock,
				users: new Map(ack.users.map((u) => [u.connectionId, u])),
			};
			if (this.state.token !== null) this.startRenewing();
			this.view.showLock(resourceId, ack.lock?.holder ?? null, ack.lock?.expiresAt ?? null);
		});
	}

	/** A viewer asks to become editor. */
	takeOver(): void {
		const st = this.state;
		if (!st) return;
		this.socket.emit("lock:acquire", { resourceId: st.resourceId }, (ack: AcquireAck | LockHeldFailure | Failure) => {
			if (ack.ok) {
				st.role = "editor";
				st.token = ack.lock.token;
				st.lock = ack.lock;
				this.startRenewing();
			} else if ("lock" in ack) {
				this.view.toast(`${ack.lock.holder.username} still edits ${ack.lock.resourceId}`);
			} else {
				this.view.toast(`${ack.error.code}: ${ack.error.message}`);
			}
		});
	}

	/** Ask the holder to hand the lock on (or get it now if it is free). */
	askForLock(): void {
		const st = this.state;
		if (!st) return;
		this.socket.emit("lock:request", { resourceId: st.resourceId }, (ack) => {
			if (!ack.ok) {
				this.view.toast(`${ack.error.code}: ${ack.error.message}`);
			} else if ("requested" in ack) {
				this.view.toast(`asked ${ack.lock.holder.username}; you get the lock when they release it`);
			} else {
				st.role = "editor";
				st.token = ack.lock.token;
				st.lock = ack.lock;
				this.startRenewing();
			}
		});
	}

	save(content: string): Promise<number> {
		const st = this.state;
		if (!st || st.token === null) return Promise.reject(new Error("not the editor"));
		const req: SaveRequest = { resourceId: st.resourceId, content, baseVersion: st.version, token: st.token };
		return new Promise((resolve, reject) => {
			this.socket.emit("doc:save", req, (ack: SaveAck | Failure) => {
				if (!ack.ok) {
					if (ack.error.code === "VERSION_CONFLICT") this.view.reloadContent(st.resourceId, st.version);
					reject(new Error(`${ack.error.code}: ${ack.error.message}`));
					return;
				}
				st.version = ack.version;
				resolve(ack.version);
			});
		});
	}

	/** The same save with socket.io's promise API (needs the acks typed as required). */
	async saveAsync(content: string): Promise<number> {
		const st = this.state;
		if (!st || st.token === null) throw new Error("not the editor");
		const ack = await this.acked.emitWithAck("doc:save", {
			resourceId: st.resourceId,
			content,
			baseVersion: st.version,
			token: st.token,
		});
		const typed: NotAny<typeof ack> = true; // fails to compile if the promise is untyped
		void typed;
		if (!ack.ok) throw new Error(ack.error.code);
		st.version = ack.version;
		return ack.version;
	}

	/** Renewal that gives up after 5 s without an answer. */
	renewWithTimeout(): void {
		const st = this.state;
		if (!st) return;
		this.acked.timeout(5000).emit("lock:renew", { resourceId: st.resourceId }, (err, ack) => {
			if (err) this.view.toast("the server did not answer the renewal");
			else if (ack.ok) st.token = ack.lock.token;
			else this.view.toast(ack.error.message);
		});
	}

	private get acked(): Socket<ServerToClientEvents, ClientToServerEventsWithAck> {
		return this.socket as Socket<ServerToClientEvents, ClientToServerEventsWithAck>;
	}

	private startRenewing(): void {
		this.stopRenewing();
		this.renewTimer = setInterval(() => this.renew(), 60_000);
	}

	private stopRenewing(): void {
		if (this.renewTimer !== undefined) clearInterval(this.renewTimer);
		this.renewTimer = undefined;
	}

	renew(): void {
		const st = this.state;
		if (!st) return;
		this.socket.emit("lock:renew", { resourceId: st.resourceId }, (ack: RenewAck | Failure) => {
			if (ack.ok) {
				st.lock = ack.lock;
				st.token = ack.lock.token;
				return;
			}
			this.stopRenewing();
			st.token = null;
			st.role = "viewer";
			this.view.toast(ack.error.code === "LOCK_EXPIRED" ? "your lock expired; your changes were not saved" : ack.error.message);
		});
	}

	release(): void {
		const st = this.state;
		if (!st) return;
		this.stopRenewing();
		this.socket.emit("lock:release", { resourceId: st.resourceId }, (ack) => {
			if (ack.ok) {
				st.role = "viewer";
				st.token = null;
			} else {
				this.view.toast(ack.error.message);
			}
		});
	}

	leave(): void {
		const st = this.state;
		if (!st) return;
		this.stopRenewing();
		this.state = null;
		// fire and forget: a failure comes back as an "error" event
		this.socket.emit("presence:leave", { resourceId: st.resourceId });
	}

	async refreshToken(): Promise<IsoTime> {
		const token = await this.getToken();
		return new Promise((resolve, reject) => {
			this.socket.emit("auth:refresh", { token }, (ack) => {
				if (ack.ok) resolve(ack.expiresAt);
				else reject(new Error(`${ack.error.code}: ${ack.error.message}`));
			});
		});
	}

	/** Every revision of the tab, newest first, page by page. */
	async history(): Promise<RevisionSummary[]> {
		const st = this.state;
		if (!st) return [];
		const all: RevisionSummary[] = [];
		let before: number | null = null;
		do {
			const ack: HistoryAck | Failure = await this.acked.emitWithAck("doc:history", { resourceId: st.resourceId, before, limit: 100 });
			if (!ack.ok) throw new Error(ack.error.code);
			all.push(...ack.revisions);
			before = ack.nextBefore;
		} while (before !== null);
		return all;
	}

	/** The holder brings back an earlier version: a save of its content that names it. */
	async restore(version: number): Promise<number> {
		const st = this.state;
		if (!st || st.token === null) throw new Error("not the editor");
		const ack = await this.acked.emitWithAck("doc:revision", { resourceId: st.resourceId, version });
		if (!ack.ok) throw new Error(ack.error.code);
		const old: Revision = ack.revision;
		const saved = await this.acked.emitWithAck("doc:save", {
			resourceId: st.resourceId, content: old.content, baseVersion: st.version, token: st.token, restoredFrom: old.version,
		});
		if (!saved.ok) throw new Error(saved.error.code);
		st.version = saved.version;
		return saved.version;
	}

	close(): void {
		this.stopRenewing();
		this.socket.disconnect();
	}
}

/* ------------------------------------------------------------------------
 * Misuse that must not compile.  Each line below is an error today; if the
 * types become too loose, "Unused '@ts-expect-error' directive" fails tsc.
 * ------------------------------------------------------------------------ */
export function misuse(socket: CollabSocket): void {
	// @ts-expect-error: mode is "editor" | "viewer"
	socket.emit("presence:join", { resourceId: "document:1", mode: "owner" });
	// @ts-expect-error: resourceId is required
	socket.emit("presence:join", { mode: "editor" });
	// @ts-expect-error: resourceId is required
	socket.emit("lock:renew", {});
	// @ts-expect-error: no such client event
	socket.emit("doc:publish", { resourceId: "document:1" });
	// @ts-expect-error: no such server event
	socket.on("lock:stolen", () => {});
	// @ts-expect-error: content is a string
	socket.emit("doc:save", { resourceId: "document:1", content: 42 });
	// @ts-expect-error: the fencing token is a number
	socket.emit("doc:save", { resourceId: "document:1", content: "x", token: "7" });
	// @ts-expect-error: version is a number
	socket.on("doc:saved", (p) => { const v: string = p.version; void v; });
	// @ts-expect-error: doc:revision needs a version
	socket.emit("doc:revision", { resourceId: "document:1" });
	// @ts-expect-error: a page's limit is a number
	socket.emit("doc:history", { resourceId: "document:1", limit: "10" });
	// @ts-expect-error: a history has no content
	socket.emit("doc:history", { resourceId: "document:1" }, (ack) => { if (ack.ok) void ack.revisions[0].content; });
	// @ts-expect-error: a revision's savedBy may be null
	socket.emit("doc:revision", { resourceId: "document:1", version: 1 }, (ack) => { if (ack.ok) void ack.revision.savedBy.userId; });
	// @ts-expect-error: not an error code
	const code: ErrorCode = "LOCK_TAKEN"; void code;
	// @ts-expect-error: not a release reason
	const reason: LockReleaseReason = "expired"; void reason;
	// @ts-expect-error: a PresenceUser names its room
	const u: PresenceUser = { userId: "u", username: "U", connectionId: "c", role: "viewer", joinedAt: "2026-01-01T00:00:00.000Z" }; void u;
	// @ts-expect-error: an ack's lock may be null (and its token absent)
	socket.emit("presence:join", { resourceId: "document:1", mode: "viewer" }, (ack) => { if (ack.ok) void ack.lock.token; });
	// @ts-expect-error: a failure's code is an ErrorCode, not any string
	socket.emit("lock:release", { resourceId: "document:1" }, (ack) => { if (!ack.ok) { const c: "OOPS" = ack.error.code; void c; } });
}
