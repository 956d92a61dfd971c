#!/usr/bin/env node
/*
 * check-dts.mjs: checks types/collab.d.ts against the code that defines the
 * protocol, without TypeScript.  Every set is derived from the code, never
 * from a second hand-written list:
 *
 *   error codes     src/errors.c       [CE_...] = {"CODE", ...   (and src/collab.h's enum)
 *                   codes the code sends (session.c, conn.c, ws_transport.c, jobs.c,
 *                   jwt.c, SQL) must be in it
 *   client events   src/session.c      event_specs[] names and the "auth:refresh" branch
 *   server events   src/payloads.c     {"event":...} built for collab_publish_event, the
 *                                      builders that C and SQL (through collab._publish_*())
 *                                      both call; and any collab._publish(jsonb_build_object(
 *                                      'event', ...)) of the SQL scripts
 *   shared objects  src/payloads.c     payload_user_ref, payload_lock_info, payload_presence_user
 *                   src/session.c, src/conn.c   the worker's own sio_event_begin(..., "name", ...)
 *   payload fields  the same builders, minus the routing fields src/rooms.c strips
 *                   (plus the token it adds to the holder's lock:acquired);
 *                   acks from the ws_* SQL functions (or the C functions that
 *                   implement them) and session.c
 *
 * The SQL is what a new installation runs: sql/collab--<first>.sql and then
 * each upgrade script in order, each function as last (re)defined.
 *
 * Usage: node test/types/check-dts.mjs [repo root]   (default: two levels up)
 * Prints one line per check and ends with "types: N passed, M failed";
 * exits 1 on any failure.
 */
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), "..", ".."));
const read = (p) => readFileSync(join(root, p), "utf8");

let passed = 0;
let failed = 0;
function check(ok, what, detail = "") {
	if (ok) passed++;
	else failed++;
	console.log(`${ok ? "ok  " : "FAIL"} ${what}${!ok && detail ? `\n       ${detail}` : ""}`);
	return ok;
}
const fmt = (xs) => [...xs].sort().join(", ") || "(none)";
function compareSets(what, fromCode, fromDts, codeName, dtsName) {
	const missing = [...fromCode].filter((x) => !fromDts.has(x));
	const extra = [...fromDts].filter((x) => !fromCode.has(x));
	const parts = [];
	if (missing.length) parts.push(`in ${codeName} but not in ${dtsName}: ${fmt(missing)}`);
	if (extra.length) parts.push(`in ${dtsName} but not in ${codeName}: ${fmt(extra)}`);
	return check(parts.length === 0 && fromCode.size > 0,
		`${what} (${fromCode.size} in ${codeName})`, parts.join("; ") || "nothing found in the code");
}

/* ------------------------------------------------------------------------
 * Scanning helpers
 * ------------------------------------------------------------------------ */

/** Removes comments, keeping strings (lang: "ts" | "c" | "sql"). Offsets change. */
function stripComments(text, lang) {
	let out = "";
	for (let i = 0; i < text.length;) {
		const c = text[i];
		const q = lang === "sql" ? c === "'" : c === '"' || c === "'" || (lang === "ts" && c === "`");
		if (q) {
			let j = i + 1;
			while (j < text.length) {
				if (lang !== "sql" && text[j] === "\\") { j += 2; continue; }
				if (text[j] === c) {
					if (lang === "sql" && text[j + 1] === c) { j += 2; continue; }
					break;
				}
				j++;
			}
			out += text.slice(i, j + 1);
			i = j + 1;
		} else if (c === "/" && text[i + 1] === "*") {
			const j = text.indexOf("*/", i + 2);
			i = j < 0 ? text.length : j + 2;
			out += " ";
		} else if ((lang !== "sql" && c === "/" && text[i + 1] === "/") || (lang === "sql" && c === "-" && text[i + 1] === "-")) {
			const j = text.indexOf("\n", i);
			i = j < 0 ? text.length : j;
		} else {
			out += c;
			i++;
		}
	}
	return out;
}

/**
 * From text[open] (an opening bracket), the index of its match, skipping
 * strings.  Brackets: ( [ {.
 */
function matchBracket(text, open, lang) {
	const pairs = { "(": ")", "[": "]", "{": "}" };
	const stack = [];
	for (let i = open; i < text.length; i++) {
		const c = text[i];
		if ((lang === "sql" && c === "'") || (lang !== "sql" && (c === '"' || c === "'"))) {
			let j = i + 1;
			while (j < text.length) {
				if (lang !== "sql" && text[j] === "\\") { j += 2; continue; }
				if (text[j] === c) {
					if (lang === "sql" && text[j + 1] === c) { j += 2; continue; }
					break;
				}
				j++;
			}
			i = j;
		} else if (pairs[c]) stack.push(pairs[c]);
		else if (c === ")" || c === "]" || c === "}") {
			if (stack.pop() !== c) return -1;
			if (stack.length === 0) return i;
		}
	}
	return -1;
}

/** Splits text at `sep` characters that are outside brackets and strings. */
function splitTop(text, sep, lang) {
	const parts = [];
	let depth = 0;
	let start = 0;
	for (let i = 0; i < text.length; i++) {
		const c = text[i];
		if ((lang === "sql" && c === "'") || (lang !== "sql" && (c === '"' || c === "'"))) {
			let j = i + 1;
			while (j < text.length) {
				if (lang !== "sql" && text[j] === "\\") { j += 2; continue; }
				if (text[j] === c) {
					if (lang === "sql" && text[j + 1] === c) { j += 2; continue; }
					break;
				}
				j++;
			}
			i = j;
		} else if ("([{".includes(c)) depth++;
		else if (")]}".includes(c)) depth--;
		else if (c === sep && depth === 0) {
			parts.push(text.slice(start, i));
			start = i + 1;
		}
	}
	parts.push(text.slice(start));
	return parts.map((p) => p.trim()).filter((p) => p !== "");
}

/** Splits C code into statements: at ; { } outside parentheses, strings and char literals. */
function splitC(text) {
	const parts = [];
	let depth = 0;
	let start = 0;
	for (let i = 0; i < text.length; i++) {
		const c = text[i];
		if (c === '"' || c === "'") {
			let j = i + 1;
			while (j < text.length && text[j] !== c) j += text[j] === "\\" ? 2 : 1;
			i = j;
		} else if (c === "(") depth++;
		else if (c === ")") depth--;
		else if (depth === 0 && (c === ";" || c === "{" || c === "}")) {
			parts.push({ text: text.slice(start, i), at: start });
			start = i + 1;
		}
	}
	parts.push({ text: text.slice(start), at: start });
	return parts.filter((p) => p.text.trim() !== "");
}

const sqlLiteral = (s) => {
	const m = /^'((?:[^']|'')*)'$/.exec(s.trim());
	return m ? m[1].replace(/''/g, "'") : null;
};
const cString = (body) => JSON.parse(`"${body.replace(/\\'/g, "'")}"`);

/* ------------------------------------------------------------------------
 * types/collab.d.ts
 * ------------------------------------------------------------------------ */
const dtsPath = "types/collab.d.ts";
const dts = stripComments(read(dtsPath), "ts");
const interfaces = new Map();	// name -> { extends: [], members: Map(key -> { optional, type }) }
const aliases = new Map();		// name -> type text

for (const m of dts.matchAll(/export\s+interface\s+(\w+)(?:\s+extends\s+([\w\s,]+?))?\s*\{/g)) {
	const open = m.index + m[0].length - 1;
	const close = matchBracket(dts, open, "ts");
	const members = new Map();
	for (const part of splitTop(dts.slice(open + 1, close), ";", "ts")) {
		const mm = /^(?:readonly\s+)?("[^"]+"|'[^']+'|[A-Za-z_$][\w$]*)(\?)?\s*:\s*([\s\S]*)$/.exec(part);
		if (!mm) continue;
		const key = mm[1].replace(/^["']|["']$/g, "");
		members.set(key, { optional: mm[2] === "?", type: mm[3].trim() });
	}
	interfaces.set(m[1], { extends: m[2] ? m[2].split(",").map((s) => s.trim()) : [], members });
}
for (const m of dts.matchAll(/export\s+type\s+(\w+)\s*=\s*/g)) {
	const start = m.index + m[0].length;
	const rest = dts.slice(start);
	const end = splitTop(rest + ";", ";", "ts")[0];
	aliases.set(m[1], end);
}

/** The fields of a named type: Map(key -> { optional, type }), or null. */
function fieldsOf(name, seen = new Set()) {
	name = name.trim();
	if (seen.has(name)) return null;
	seen.add(name);
	if (aliases.has(name) && /^\w+$/.test(aliases.get(name).trim())) return fieldsOf(aliases.get(name), seen);
	const itf = interfaces.get(name);
	if (!itf) return null;
	const out = new Map();
	for (const base of itf.extends) {
		const f = fieldsOf(base, seen);
		if (f) for (const [k, v] of f) out.set(k, v);
	}
	for (const [k, v] of itf.members) out.set(k, v);
	return out;
}

/* ------------------------------------------------------------------------
 * 0. Documentation: every interface member and every union member of the
 *    .d.ts carries a JSDoc comment (the line before it ends a /** comment,
 *    or one precedes it on its own line).
 * ------------------------------------------------------------------------ */
console.log(`# documentation of ${dtsPath}`);
{
	const lines = read(dtsPath).split("\n");
	const undocumented = [];
	let inInterface = null;
	let inDoc = false;
	let lastDocEnd = -2;
	lines.forEach((line, i) => {
		if (/^\s*\/\*\*/.test(line)) inDoc = true;
		if (inDoc) {
			if (line.includes("*/")) { inDoc = false; lastDocEnd = i; }
			return;
		}
		const itf = /^export\s+interface\s+(\w+)/.exec(line);
		if (itf) { inInterface = itf[1]; return; }
		if (/^\}/.test(line)) { inInterface = null; return; }
		const member = inInterface && /^\t(?:readonly\s+)?("[^"]+"|[A-Za-z_$][\w$]*)\??\s*:/.exec(line);
		const variant = /^\t\|\s*("[^"]*")/.exec(line);
		const inline = /\*\/\s*\S/.test(line);
		if ((member || variant) && lastDocEnd !== i - 1 && !inline)
			undocumented.push(`${inInterface ? inInterface + "." : ""}${(member || variant)[1]} (line ${i + 1})`);
	});
	check(undocumented.length === 0, `every field and union member in ${dtsPath} has a JSDoc comment`, undocumented.join(", "));
}

/* ------------------------------------------------------------------------
 * The code
 * ------------------------------------------------------------------------ */
const errorsC = read("src/errors.c");
const collabH = read("src/collab.h");
// the worker's side of a session: its protocol, its outgoing frames, its transport
const wsC = stripComments(["session.c", "conn.c", "ws_transport.c", "access_live.c"].map((f) => read(`src/${f}`)).join("\n"), "c");
const roomsC = stripComments(read("src/rooms.c"), "c");
const saveGuardRaw = read("src/save_guard.c");
const jwtC = stripComments(read("src/jwt.c"), "c");
const workerC = stripComments(read("src/worker.c") + "\n" + read("src/jobs.c"), "c");
/*
 * The SQL functions as a new installation has them: the install script,
 * then the upgrade scripts in version order; CREATE OR REPLACE and DROP
 * FUNCTION take effect in that order.
 */
const versionOf = (v) => v.split(".").map(Number);
const cmpVersion = (a, b) => { const x = versionOf(a), y = versionOf(b); for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0); return 0; };
const sqlFiles = readdirSync(join(root, "sql")).filter((f) => /^collab--[\d.]+(--[\d.]+)?\.sql$/.test(f))
	.sort((a, b) => cmpVersion(/--([\d.]+)\.sql$/.exec(a)[1], /--([\d.]+)\.sql$/.exec(b)[1]));
const sqlFile = sqlFiles.join(" + ");
const sqlDefinitions = new Map();	// function name -> its last CREATE [OR REPLACE] FUNCTION statement
for (const f of sqlFiles) {
	const text = stripComments(read(join("sql", f)), "sql");
	for (const m of text.matchAll(/CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+collab\.(\w+)\(|DROP\s+FUNCTION\s+(?:IF\s+EXISTS\s+)?collab\.(\w+)\(/g)) {
		if (m[2]) { sqlDefinitions.delete(m[2]); continue; }
		// a body in $$ ... $$, or a C function's declaration up to its ';'
		const dollar = text.indexOf("$$", m.index);
		const semi = text.indexOf(";", m.index);
		const end = dollar >= 0 && dollar < semi ? text.indexOf(";", text.indexOf("$$", dollar + 2)) : semi;
		sqlDefinitions.set(m[1], "CREATE FUNCTION collab." + text.slice(m.index + m[0].length - m[1].length - 1, end + 1));
	}
}
const sql = [...sqlDefinitions.values()].join("\n\n");

/** A C function's text, from its name at the start of a line to its closing brace. */
function cFunction(text, name) {
	const m = new RegExp(`^${name}\\(`, "m").exec(text);
	if (!m) return null;
	const open = text.indexOf("\n{", m.index) + 1;
	const close = matchBracket(text, open, "c");
	return text.slice(m.index, close + 1);
}

/** A SQL function's body, from CREATE FUNCTION collab.name( to the closing $$; (null for a C function). */
function sqlFunction(name) {
	const m = new RegExp(`CREATE FUNCTION collab\\.${name}\\(`).exec(sql);
	if (!m || cSymbolOf(name)) return null;
	const end = sql.indexOf("\n$$;", m.index);
	return sql.slice(m.index, end < 0 ? undefined : end);
}

/** The C symbol of a SQL function declared AS 'MODULE_PATHNAME', 'symbol' (null for others). */
function cSymbolOf(name) {
	const m = new RegExp(`CREATE FUNCTION collab\\.${name}\\(`).exec(sql);
	if (!m) return null;
	const end = sql.indexOf(";", sql.indexOf(")", m.index));
	return /AS\s+'MODULE_PATHNAME',\s*'(\w+)'/.exec(sql.slice(m.index, end))?.[1] ?? null;
}

/** src/*.c without comments, by file name. */
const cSources = new Map(readdirSync(join(root, "src")).filter((f) => f.endsWith(".c"))
	.map((f) => [f, stripComments(read(join("src", f)), "c")]));

/**
 * The JSON each appending helper of a C file builds: static void name(StringInfo
 * buf, ...) replayed as replayC does (helpers may call helpers); name -> JSON
 * text, or null for a function that is not such a helper.
 */
function cHelpers(text) {
	const memo = new Map();
	const lookup = (name) => {
		if (memo.has(name)) return memo.get(name);
		memo.set(name, null);
		// a helper of this file, or of another (the builders of payloads.c)
		const fn = cFunction(text, name) ?? cFunctionAnywhere(name)?.body;
		if (!fn || !new RegExp(`^${name}\\(StringInfo buf\\b`).test(fn)) return null;
		const r = replayC(fn.slice(fn.indexOf("\n{")), "buf", lookup);
		// a whole JSON value, or a fragment such as one member (payload_presence_role)
		const piece = r.error ? r.text ?? null : JSON.stringify(r.value);
		memo.set(name, piece);
		return piece;
	};
	return lookup;
}

/** A C function's text, and its file, wherever in src/ it is defined. */
function cFunctionAnywhere(name) {
	for (const [f, text] of cSources) {
		const body = cFunction(text, name);
		if (body) return { file: f, body, text };
	}
	return null;
}

/** Every jsonb_build_object(...) call in text: { args, start }. */
function jsonbObjects(text) {
	const out = [];
	for (const m of text.matchAll(/jsonb_build_object\(/g)) {
		const open = m.index + m[0].length - 1;
		const close = matchBracket(text, open, "sql");
		out.push({ start: m.index, args: splitTop(text.slice(open + 1, close), ",", "sql") });
	}
	return out;
}
/** The keys of a jsonb_build_object call (null if a key is not a literal). */
function jsonbKeys(args) {
	const keys = [];
	for (let i = 0; i < args.length; i += 2) {
		const k = sqlLiteral(args[i]);
		if (k === null) return null;
		keys.push(k);
	}
	return keys;
}
const shape = (keys, optional = []) => new Map(keys.map((k) => [k, { optional: optional.includes(k) }]));

/**
 * Replays the C statements that append to `buf` in `text` and returns the
 * JSON object they build: { value, keys: Map(top-level key -> { optional }) }.
 * String escapes become "s", numbers 0, other non-literal appends null; a
 * top-level key appended at a deeper indentation than the first append
 * (inside an if) is optional.
 */
function replayC(text, buf, helpers = null) {
	const b = buf.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
	let out = "";
	const marks = [];	// [offset, indent]
	let baseIndent = null;
	for (const part of splitC(text)) {
		const stmt = part.text.trim();
		const at = part.at + part.text.indexOf(stmt);
		const lineStart = text.lastIndexOf("\n", at) + 1;
		// an append under an if or else without braces is as conditional as one inside them
		const indent = /^[\t ]*/.exec(text.slice(lineStart))[0].replace(/ {4}/g, "\t").length +
			(/^(?:if\s*\(|else\b)/.test(stmt) ? 1 : 0);
		let piece = null;
		let m;
		const lit = (s) => [...s.matchAll(/"((?:[^"\\]|\\.)*)"|INT64_FORMAT|%[-\d.]*l*[dsu]/g)]
			.map((x) => (x[1] !== undefined ? cString(x[1]) : "0")).join("");
		if ((m = new RegExp(`^(?:.*\\s)?appendStringInfo(?:String)?\\(&?${b},\\s*((?:"(?:[^"\\\\]|\\\\.)*"\\s*|INT64_FORMAT\\s*)+)`, "s").exec(stmt)))
			piece = lit(m[1]).replace(/%[-\d.]*l*[dsu]/g, "0");
		else if ((m = new RegExp(`appendStringInfoChar(?:Macro)?\\(&?${b},\\s*'(\\\\?.)'\\)`).exec(stmt)))
			piece = m[1].replace(/^\\/, "");
		else if (new RegExp(`(?:escape_json|sio_json_escape(?:_len)?|append_ts)\\(&?${b},`).test(stmt))
			piece = '"s"';
		else if (new RegExp(`sio_append_int64\\(&?${b},`).test(stmt))
			piece = "0";
		else if (helpers && (m = new RegExp(`^(?:.*\\s)?(\\w+)\\(&?${b},`).exec(stmt)) && helpers(m[1]) !== null)
			piece = helpers(m[1]);
		else if (new RegExp(`appendStringInfoString\\(&?${b},`).test(stmt) || new RegExp(`appendBinaryStringInfo\\(&?${b},`).test(stmt))
			piece = "null";
		if (piece === null) continue;
		if (baseIndent === null) baseIndent = indent;
		marks.push([out.length, indent]);
		out += piece;
	}
	let value;
	try {
		value = JSON.parse(out);
	} catch {
		return { error: `could not rebuild JSON from the C code: ${out}`, text: out || null };
	}
	// where each top-level key starts in `out`
	const keys = new Map();
	let depth = 0;
	for (let i = 0; i < out.length; i++) {
		const c = out[i];
		if (c === '"') {
			let j = i + 1;
			while (out[j] !== '"') j += out[j] === "\\" ? 2 : 1;
			if (depth === 1 && /^\s*:/.test(out.slice(j + 1))) {
				const key = JSON.parse(out.slice(i, j + 1));
				const mark = marks.filter(([o]) => o <= i).pop();
				keys.set(key, { optional: mark[1] > baseIndent });
			}
			i = j;
		} else if (c === "{" || c === "[") depth++;
		else if (c === "}" || c === "]") depth--;
	}
	return { value, keys };
}

/** Compares a shape from the code with the fields of a .d.ts type. */
function compareShape(what, code, dtsFields, dtsName) {
	if (!dtsFields) return check(false, what, `${dtsName} is not an interface in ${dtsPath}`);
	const diffs = [];
	for (const [k, v] of code) {
		if (!dtsFields.has(k)) diffs.push(`${k} is sent but not in ${dtsName}`);
		else if (dtsFields.get(k).optional !== v.optional)
			diffs.push(`${k} is ${v.optional ? "sometimes" : "always"} sent but ${dtsFields.get(k).optional ? "optional" : "required"} in ${dtsName}`);
	}
	for (const k of dtsFields.keys()) if (!code.has(k)) diffs.push(`${dtsName}.${k} is never sent`);
	return check(diffs.length === 0, what, diffs.join("; "));
}
const sameKeys = (a, b) => a.size === b.size && [...a.keys()].every((k) => b.has(k) && a.get(k).optional === b.get(k).optional);

/* ------------------------------------------------------------------------
 * 1. Error codes
 * ------------------------------------------------------------------------ */
console.log(`# error codes (src/errors.c) vs ErrorCode in ${dtsPath}`);
const tableCodes = new Map();
for (const m of errorsC.matchAll(/\[CE_(\w+)\]\s*=\s*\{\s*"([A-Z0-9_]+)"/g)) tableCodes.set(m[2], m[1]);
const enumBody = /CE_\w+[\s\S]*?CE_NUM_CODES/.exec(collabH)?.[0] ?? "";
const enumCodes = new Set([...enumBody.matchAll(/\bCE_(\w+)/g)].map((m) => m[1]).filter((c) => c !== "NUM_CODES"));
compareSets("src/errors.c has an entry for every CollabErrorCode of src/collab.h",
	enumCodes, new Set(tableCodes.values()), "src/collab.h", "src/errors.c");
const dtsCodes = new Set([...(aliases.get("ErrorCode") ?? "").matchAll(/"([^"]+)"/g)].map((m) => m[1]));
compareSets("ErrorCode lists exactly the codes of src/errors.c", new Set(tableCodes.keys()), dtsCodes, "src/errors.c", "ErrorCode");

const sentCodes = new Map();	// code -> where
const note = (code, where) => { if (!sentCodes.has(code)) sentCodes.set(code, where); };
// C sends codes by CollabErrorCode: CE_X is the code of [CE_X] in the table
const codeOfEnum = new Map([...tableCodes].map(([code, e]) => [e, code]));
const noteEnum = (e, where) => note(codeOfEnum.get(e) ?? `CE_${e} (not in src/errors.c)`, where);
for (const m of wsC.matchAll(/(?:conn_send_error|reject_connect)\([^;]*?\bCE_(\w+)/g)) noteEnum(m[1], "src/session.c, conn.c, ws_transport.c");
for (const m of wsC.matchAll(/err_code\s*=\s*CE_(\w+)/g)) noteEnum(m[1], "src/session.c");
for (const m of workerC.matchAll(/err_code\s*=\s*CE_(\w+)/g)) noteEnum(m[1], "src/jobs.c");
const jwtCodeFn = cFunction(jwtC, "jwt_collab_error") ?? "";
for (const m of jwtCodeFn.matchAll(/return\s+CE_(\w+)/g)) noteEnum(m[1], "src/jwt.c jwt_collab_error()");
for (const m of sql.matchAll(/_raise\(\s*'([A-Z][A-Z0-9_]+)'/g)) note(m[1], sqlFile);
for (const m of sql.matchAll(/'code',\s*'([A-Z][A-Z0-9_]+)'/g)) note(m[1], sqlFile);
const unknown = [...sentCodes].filter(([c]) => !dtsCodes.has(c));
check(sentCodes.size > 0 && unknown.length === 0,
	`every code the worker and SQL send is in ErrorCode (${sentCodes.size} found)`,
	unknown.map(([c, w]) => `${c} (${w})`).join(", ") || "no codes found in the code");

/* ------------------------------------------------------------------------
 * 2. Client -> server events
 * ------------------------------------------------------------------------ */
console.log(`# client events (src/session.c) vs ClientToServerEvents`);
const specsAt = wsC.search(/event_specs\[\]\s*=\s*\{/);
const specsOpen = wsC.indexOf("{", specsAt);
const specsText = wsC.slice(specsOpen, matchBracket(wsC, specsOpen, "c") + 1);
const specs = [...specsText.matchAll(/\{\s*"([^"]+)"\s*,\s*"([^"]*)"/g)].map((m) => ({ name: m[1], sql: m[2] }));
const clientEvents = new Set(specs.map((s) => s.name));
for (const m of wsC.matchAll(/strcmp\(\s*f->event\s*,\s*"([^"]+)"\s*\)/g)) clientEvents.add(m[1]);
const c2s = interfaces.get("ClientToServerEvents")?.members ?? new Map();
compareSets("ClientToServerEvents has exactly the events the worker accepts",
	clientEvents, new Set(c2s.keys()), "src/session.c", "ClientToServerEvents");

/* ------------------------------------------------------------------------
 * 3. Server -> client events
 * ------------------------------------------------------------------------ */
console.log(`# server events (src/payloads.c, ${sqlFile}, src/session.c, src/conn.c) vs ServerToClientEvents`);
// the fields rooms.c strips: "event", and the routing members that
// src/events.c names once (for the fan-out and for NOTIFY listeners)
const routing = new Set([...(cFunction(roomsC, "client_payload") ?? "").matchAll(/strcmp\(m->key,\s*"(\w+)"\)/g)].map((m) => m[1]));
const eventsC = stripComments(read("src/events.c"), "c");
for (const m of (cFunction(eventsC, "collab_event_routing_member") ?? "").matchAll(/strcmp\(key,\s*"(\w+)"\)/g)) routing.add(m[1]);
check(routing.has("event") && routing.has("holderId") && /collab_event_routing_member\(m->key\)/.test(cFunction(roomsC, "client_payload") ?? ""),
	`routing fields stripped by src/rooms.c: ${fmt(routing)}`, "client_payload() or collab_event_routing_member() not found");
const published = new Map();	// event -> [{ keys: [...], where }]
// optional: keys a site sends only sometimes (appended under an if in C)
const publish = (name, keys, where, optional = []) => {
	if (!published.has(name)) published.set(name, []);
	published.get(name).push({ keys, where, optional });
};

// SQL: collab._publish(jsonb_build_object('event', 'name', ...))
const publishCalls = [...sql.matchAll(/collab\._publish\(/g)].filter((m) => !/FUNCTION\s+$/.test(sql.slice(m.index - 20, m.index)));
// (the builders of src/payloads.c publish the events of the SQL functions
// through collab._publish_*(); they are read below with the C code)
let parsedCalls = 0;
for (const m of publishCalls) {
	const obj = jsonbObjects(sql.slice(m.index, m.index + 4000))[0];
	const keys = obj && jsonbKeys(obj.args);
	if (!obj || obj.start !== "collab._publish(".length || !keys || keys[0] !== "event" || sqlLiteral(obj.args[1]) === null) continue;
	parsedCalls++;
	publish(sqlLiteral(obj.args[1]), keys, sqlFile);
}
check(parsedCalls === publishCalls.length,
	`every collab._publish() call in ${sqlFile} is jsonb_build_object('event', '<name>', ...) (${parsedCalls}/${publishCalls.length})`);

// C: collab_publish_event(buf.data, ...) after building {"event":"name",...},
// or event_publish(&buf) after event_begin(&buf, "name", ...)
const cFiles = [...cSources.keys()].filter((f) => f !== "events.c");
let cPublishes = 0;
let cParsed = 0;
/* one published event, replayed: counted, and its shape recorded if it can be read */
function cPublished(f, r, name) {
	cPublishes++;
	if (r.error || typeof r.value?.event !== "string" || (name !== undefined && r.value.event !== name)) {
		check(false, `the event published in src/${f} can be read`, r.error ?? `no "event" member${name ? ` "${name}"` : ""}`);
		return;
	}
	cParsed++;
	publish(r.value.event, [...r.keys.keys()], `src/${f}`, [...r.keys].filter(([, k]) => k.optional).map(([k]) => k));
}
for (const f of cFiles) {
	const text = cSources.get(f);
	const helpers = cHelpers(text);
	for (const m of text.matchAll(/collab_publish_event\(\s*(\w+)\.data/g)) {
		const fnStart = text.lastIndexOf("\n{", m.index);
		const buildAt = Math.max(fnStart, text.lastIndexOf(`initStringInfo(&${m[1]})`, m.index));
		cPublished(f, replayC(text.slice(buildAt, m.index), m[1], helpers));
	}
	// payloads.c's builders: event_begin(&ev, "name", resource_id) opens
	// {"event":"name","resourceId":..., and event_publish(&ev) closes and publishes
	for (const m of text.matchAll(/\bevent_publish\(\s*&(\w+)\s*\)/g)) {
		const fnStart = text.lastIndexOf("\n{", m.index);
		const begin = [...text.slice(fnStart, m.index).matchAll(new RegExp(`event_begin\\(\\s*&${m[1]},\\s*"([^"]+)",[^;]*;`, "g"))].pop();
		const body = begin && text.slice(fnStart + begin.index + begin[0].length, m.index);
		cPublished(f, begin
			? replayC(`\n\tappendStringInfoString(&${m[1]}, "{\\"event\\":\\"${begin[1]}\\",\\"resourceId\\":");` +
				`\n\tescape_json(&${m[1]}, resource_id);${body}\tappendStringInfoChar(&${m[1]}, '}');\n`, m[1], helpers)
			: { error: "no event_begin() before event_publish()" }, begin?.[1]);
	}
}
check(cPublishes > 0 && cParsed === cPublishes, `every collab_publish_event() or event_publish() call in src/*.c builds a readable event (${cParsed}/${cPublishes})`);

// the worker's own sends: sio_event_begin(&buf, NULL, "name", ...)
const own = new Map();	// event -> shape
for (const m of wsC.matchAll(/sio_event_begin\(\s*&?(\w+),\s*NULL,\s*"([^"]+)"/g)) {
	const end = wsC.indexOf("sio_packet_end", m.index);
	const r = replayC(wsC.slice(m.index, end), m[1]);
	if (r.error) check(false, `the "${m[2]}" event built by the worker can be read`, r.error);
	else own.set(m[2], r.keys);
}
// events named with COLLAB_INTERNAL_EVENT_PREFIX (src/collab.h) are the
// workers' own bookkeeping, which rooms.c never sends to a browser
const internalPrefix = /#define\s+COLLAB_INTERNAL_EVENT_PREFIX\s+"([^"]+)"/.exec(read("src/collab.h"))?.[1];
check(typeof internalPrefix === "string" && /is_internal_event\(/.test(cSources.get("rooms.c") ?? ""),
	"internal events have a prefix (src/collab.h) that the fan-out (src/rooms.c) filters out");
const serverEvents = new Set([...published.keys(), ...own.keys()].filter((e) => !internalPrefix || !e.startsWith(internalPrefix)));
const s2c = interfaces.get("ServerToClientEvents")?.members ?? new Map();
compareSets("ServerToClientEvents has exactly the events the code can emit",
	serverEvents, new Set(s2c.keys()), "the code", "ServerToClientEvents");

/* ------------------------------------------------------------------------
 * 4. Server event payloads
 * ------------------------------------------------------------------------ */
console.log("# server event payloads");
// rooms.c sends the holder its own copy of one event through
// send_holder_event(), which adds the token
const tokenEvent = /[\w>-]+\s*=\s*strcmp\(name,\s*"([^"]+)"\)\s*==\s*0;[\s\S]*?if\s*\(\s*(?:\w+->)?acquired/.test(roomsC) &&
	/send_holder_event\(conn/.test(roomsC) &&
	/\nsend_holder_event\([^)]*\)\s*\{[\s\S]*?\\"token\\":/.test(roomsC)
	? /acquired\s*=\s*strcmp\(name,\s*"([^"]+)"\)/.exec(roomsC)?.[1] : null;
check(tokenEvent !== null, `src/rooms.c adds the holder's token to ${tokenEvent ?? "?"}`);
const payloadType = (ev) => /^\(\s*\w+\s*:\s*(\w+)\s*\)\s*=>\s*void$/.exec(s2c.get(ev)?.type ?? "")?.[1];
for (const ev of [...serverEvents].sort()) {
	const typeName = payloadType(ev);
	if (!s2c.has(ev)) continue;
	if (!typeName) {
		check(false, `${ev}: handler is (p: <Interface>) => void`, s2c.get(ev).type);
		continue;
	}
	let code;
	if (published.has(ev)) {
		const sites = published.get(ev);
		const all = sites.map((s) => new Set(s.keys.filter((k) => !routing.has(k))));
		const union = new Set(all.flatMap((s) => [...s]));
		code = new Map([...union].map((k) => [k, { optional: !all.every((s) => s.has(k)) || sites.some((s) => s.optional.includes(k)) }]));
		if (ev === tokenEvent) code.set("token", { optional: true });
	} else code = own.get(ev);
	compareShape(`${ev} payload matches ${typeName}`, code, fieldsOf(typeName), typeName);
}

/* ------------------------------------------------------------------------
 * 5. Shared objects
 * ------------------------------------------------------------------------ */
console.log("# shared objects");
{
	// each shared object has one builder, in src/payloads.c
	const builders = [["UserRef", "payload_user_ref"], ["LockInfo", "payload_lock_info"],
		["PresenceUser", "payload_presence_user"]];
	for (const [type, fn] of builders) {
		const def = cFunctionAnywhere(fn);
		if (!def) { check(false, `${type} is built by ${fn}() in src/`); continue; }
		const r = replayC(def.body.slice(def.body.indexOf("\n{")), "buf", cHelpers(def.text));
		if (r.error) check(false, `${type} can be read from ${fn}() in src/${def.file}`, r.error);
		else compareShape(`${type} matches ${fn}() in src/${def.file}${type === "LockInfo" ? " (token only with with_token)" : ""}`,
			r.keys, fieldsOf(type), type);
	}
	// and no SQL function builds one of them with jsonb_build_object()
	const lockInfo = fieldsOf("LockInfo") ?? new Map();
	const presenceUser = fieldsOf("PresenceUser") ?? new Map();
	const inline = [];
	for (const [fn, body] of sqlDefinitions) {
		for (const o of jsonbObjects(body)) {
			const keys = jsonbKeys(o.args) ?? [];
			const has = (k) => keys.includes(k);
			if ((has("userId") && has("username")) || (has("holder") && has("expiresAt") && keys.every((k) => lockInfo.has(k))) ||
				(has("connectionId") && keys.every((k) => presenceUser.has(k))))
				inline.push(`collab.${fn}() builds {${keys.join(", ")}}`);
		}
	}
	check(inline.length === 0, "no SQL function builds a UserRef, LockInfo or PresenceUser itself (they call the C builders)",
		inline.join("; "));
}

/* ------------------------------------------------------------------------
 * 6. Acknowledgements
 * ------------------------------------------------------------------------ */
console.log("# acknowledgements");
const sendError = cFunction(wsC, "conn_send_error") ?? "";
const ackBranch = sendError.slice(sendError.indexOf("sio_ack_begin"), sendError.indexOf("else"));
const failure = replayC(ackBranch, "buf");
if (failure.error) check(false, "the failure ack of conn_send_error() can be read", failure.error);
else compareShape("Failure matches the ack of conn_send_error()", failure.keys, fieldsOf("Failure"), "Failure");
if (!failure.error) {
	const errKeys = new Set(Object.keys(failure.value.error ?? {}));
	compareSets("Failure.error matches conn_send_error()'s error object", errKeys,
		new Set((fieldsOf("FailureError") ?? new Map()).keys()), "conn_send_error()", "FailureError");
}

/** The ack shapes the code can send for one client event: [{ keys, ok, where }]. */
function ackShapes(ev) {
	const shapes = [];
	if (!failure.error) shapes.push({ keys: failure.keys, ok: false, where: "conn_send_error()" });
	const spec = specs.find((s) => s.name === ev);
	const seen = new Set();
	const fromSql = (fn) => {
		if (seen.has(fn)) return;
		seen.add(fn);
		const body = sqlFunction(fn);
		if (body === null && cSymbolOf(fn)) {
			// a C function: each {"ack":...} it builds, from initStringInfo(&ack) to its PG_RETURN
			const def = cFunctionAnywhere(cSymbolOf(fn));
			if (!def) { shapes.push({ error: `collab.${fn}(): C function ${cSymbolOf(fn)} not found in src/` }); return; }
			const helpers = cHelpers(def.text);
			const starts = [...def.body.matchAll(/initStringInfo\(&ack\)/g)].map((m) => m.index);
			if (starts.length === 0) shapes.push({ error: `collab.${fn}(): no ack built in ${def.file}` });
			for (const at of starts) {
				const r = replayC(def.body.slice(at, def.body.indexOf("PG_RETURN", at)), "ack", helpers);
				if (r.error || typeof r.value?.ack !== "object") {
					shapes.push({ error: `collab.${fn}() in src/${def.file}: ${r.error ?? "no ack member"}` });
					continue;
				}
				shapes.push({ keys: shape(Object.keys(r.value.ack)), ok: r.value.ack.ok === true, where: `${cSymbolOf(fn)}() in src/${def.file}` });
			}
			return;
		}
		if (body === null) { shapes.push({ error: `collab.${fn}() not found in ${sqlFile}` }); return; }
		// a function that answers with another one's ack: RETURN collab.ws_x(...)
		for (const m of body.matchAll(/RETURN\s+collab\.(ws_\w+)\(/g)) fromSql(m[1]);
		for (const o of jsonbObjects(body)) {
			if (sqlLiteral(o.args[0]) !== "ack") continue;
			const inner = jsonbObjects(o.args[1])[0];
			const keys = inner && inner.start === 0 && jsonbKeys(inner.args);
			if (!keys) { shapes.push({ error: `collab.${fn}(): an ack that is not jsonb_build_object(...)` }); continue; }
			shapes.push({ keys: shape(keys), ok: inner.args[1].trim() === "true", where: `collab.${fn}()` });
		}
		// acks built as text: ack := '{"ok":true,...' || ... ;
		for (const m of body.matchAll(/\back\s*:=\s*([^;]+);/g)) {
			const parts = m[1].split("||");
			// ack := left(ack, -1) || ',"k":' || v || '}': adds members to the ack before it
			// (collab.ws_join(): the worker adds the users itself, see below)
			if (/^\s*left\(\s*ack\s*,\s*-1\s*\)\s*$/.test(parts[0]) && shapes.length > 0 && shapes[shapes.length - 1].keys) {
				const last = shapes[shapes.length - 1];
				const more = "{" + parts.slice(1).map((p) => sqlLiteral(p) ?? "null").join("").replace(/^,/, "");
				try {
					last.keys = new Map([...last.keys, ...shape(Object.keys(JSON.parse(more)))]);
				} catch {
					shapes.push({ error: `collab.${fn}(): cannot read what is added to the ack ${m[1].trim()}` });
				}
				continue;
			}
			const text = parts.map((p) => sqlLiteral(p) ?? "null").join("");
			try {
				const v = JSON.parse(text);
				shapes.push({ keys: shape(Object.keys(v)), ok: v.ok === true, where: `collab.${fn}()` });
			} catch {
				shapes.push({ error: `collab.${fn}(): cannot read the ack ${m[1].trim()}` });
			}
		}
	};
	if (spec) {
		fromSql(/collab\.(\w+)\(/.exec(spec.sql)?.[1]);
	} else {
		// handled in C: the function that handles it builds {"ok":true,...} for conn_send_ack
		const handler = /strcmp\(\s*f->event\s*,\s*"([^"]+)"\s*\)\s*==\s*0\s*\)\s*\{\s*(\w+)\(/g;
		for (const m of wsC.matchAll(handler)) {
			if (m[1] !== ev) continue;
			let fnText = cFunction(wsC, m[2]) ?? "";
			// answered by the done callback of the job it queues
			const cb = /job_new\([^;]*,\s*(\w+)\s*\);/.exec(fnText);
			if (!fnText.includes("conn_send_ack") && cb) fnText = cFunction(wsC, cb[1]) ?? "";
			const at = fnText.lastIndexOf("initStringInfo(&buf)");
			const r = replayC(fnText.slice(at, fnText.indexOf("conn_send_ack", at)), "buf");
			if (r.error) shapes.push({ error: `${m[2]}(): ${r.error}` });
			else shapes.push({ keys: r.keys, ok: r.value.ok === true, where: `${m[2]}()` });
		}
	}
	return shapes;
}
const ackTypes = (ev) => {
	const m = /^\(\s*\w+\s*:\s*(\w+)\s*,\s*\w+\?\s*:\s*\(\s*\w+\s*:\s*([\w\s|]+)\)\s*=>\s*void\s*\)\s*=>\s*void$/.exec(c2s.get(ev)?.type ?? "");
	return m ? { request: m[1], acks: m[2].split("|").map((s) => s.trim()) } : null;
};
for (const ev of [...clientEvents].sort()) {
	if (!c2s.has(ev)) continue;
	const t = ackTypes(ev);
	if (!check(t !== null, `${ev}: handler is (p: <Request>, ack?: (r: <Ack> | ...) => void) => void`, c2s.get(ev).type)) continue;
	const shapes = ackShapes(ev);
	for (const s of shapes.filter((s) => s.error)) check(false, `${ev}: ack can be read`, s.error);
	const good = shapes.filter((s) => !s.error);
	const members = t.acks.map((n) => ({ name: n, fields: fieldsOf(n) }));
	const unresolved = members.filter((m) => !m.fields);
	if (unresolved.length) { check(false, `${ev}: ack types are interfaces`, fmt(unresolved.map((m) => m.name))); continue; }
	const okOf = (m) => m.fields.get("ok")?.type;
	const unmatched = good.filter((s) => !members.some((m) => sameKeys(s.keys, m.fields) && okOf(m) === String(s.ok)));
	const unused = members.filter((m) => !good.some((s) => sameKeys(s.keys, m.fields) && okOf(m) === String(s.ok)));
	check(good.length > 1 && unmatched.length === 0 && unused.length === 0,
		`${ev}: acks ${t.acks.join(" | ")} match what the code sends (${good.length} shapes)`,
		[...unmatched.map((s) => `${s.where} sends {${fmt(s.keys.keys())}} (ok: ${s.ok}), no ack type has exactly these fields`),
			...unused.map((m) => `${m.name} {${fmt(m.fields.keys())}} is never sent`)].join("; ") || "no success ack found");
}

// presence:join: the worker calls collab.ws_join(..., false) and adds the users to the
// ack itself (join_users_done), as the SQL function does with p_users true
{
	const joinSpec = specs.find((s) => s.name === "presence:join");
	const done = cFunction(wsC, "join_users_done") ?? "";
	check(!joinSpec || !/,\s*false\)/.test(joinSpec.sql) ||
		/appendStringInfoString\(&ack,\s*",\\"users\\":"\)/.test(done),
		"presence:join: the worker adds \"users\" to collab.ws_join()'s ack as the function does",
		"join_users_done() does not append ,\"users\": to the ack");
}

// docs/protocol.md carries a copy of the .d.ts: it must be the same text
{
	const md = readFileSync(join(root, "docs/protocol.md"), "utf8");
	const m = md.match(/<!-- collab\.d\.ts -->\n```ts\n([\s\S]*?)```\n<!-- \/collab\.d\.ts -->/);
	const dtsText = readFileSync(join(root, "types/collab.d.ts"), "utf8");
	check(m !== null && m[1] === dtsText, "docs/protocol.md's copy of types/collab.d.ts is up to date",
		m ? "the copy differs: paste types/collab.d.ts into docs/protocol.md again" : "no copy found");
}

console.log(`types: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
