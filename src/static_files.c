/*-------------------------------------------------------------------------
 *
 * static_files.c
 *	  The demo UI on the worker's port: GET / serves index.html and
 *	  GET /ui/<path> the other files of collab.ui_directory.
 *
 * This runs in the worker's lws HTTP callback, so it stays away from
 * anything that can ereport (palloc aside): files are found with realpath()
 * and read with open()/read(), and nothing is logged.  What it serves is
 * deliberately narrow:
 *
 *	- paths made of plain names ([A-Za-z0-9._-], not starting with '.', so
 *	  no "..", no hidden files, no percent escapes), at most four deep;
 *	- an extension from a fixed list, which also gives the Content-Type;
 *	- regular files of at most 1 MB whose real path (symlinks resolved)
 *	  lies inside the real path of collab.ui_directory;
 *	- GET only.
 *
 * Anything else under / or /ui/ is 404 (405 for another method).
 *
 * A response is written with one lws_write(), as metrics.c does.  That
 * needs HTTP/1.1: on an HTTP/2 stream libwebsockets 4.1 sends only the first
 * few kilobytes of such a write, so the worker's TLS vhost must offer ALPN
 * "http/1.1" only (browsers negotiate h2 whenever it is offered).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "static_files.h"

/* Longest path served, after "/ui/", and its most segments. */
#define STATIC_MAX_NAME		255
#define STATIC_MAX_DEPTH	4

typedef struct StaticType
{
	const char *ext;
	const char *content_type;
} StaticType;

static const StaticType static_types[] = {
	{".html", "text/html; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".svg", "image/svg+xml"},
	{".png", "image/png"},
	{".ico", "image/x-icon"},
	{".txt", "text/plain; charset=utf-8"},
};

/* A relative path of plain names, at most STATIC_MAX_DEPTH of them. */
static bool
plain_path(const char *path)
{
	const char *p = path;
	int			depth = 0;

	if (strlen(path) > STATIC_MAX_NAME)
		return false;
	for (;;)
	{
		const char *segment = p;

		/* not empty, not hidden, not "." or ".." */
		if (*p == '\0' || *p == '/' || *p == '.')
			return false;
		for (; *p != '\0' && *p != '/'; p++)
		{
			char		c = *p;

			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				  (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
				return false;
		}
		if (p == segment || ++depth > STATIC_MAX_DEPTH)
			return false;
		if (*p == '\0')
			return true;
		p++;					/* the '/' */
	}
}

/* The Content-Type for a path's extension; NULL when not served. */
static const char *
content_type_of(const char *path)
{
	const char *base = strrchr(path, '/');
	const char *dot;

	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	if (dot == NULL)
		return NULL;
	for (int i = 0; i < lengthof(static_types); i++)
		if (strcmp(dot, static_types[i].ext) == 0)
			return static_types[i].content_type;
	return NULL;
}

static int
add_header(struct lws *wsi, const char *name, const char *value,
		   unsigned char **p, unsigned char *end)
{
	return lws_add_http_header_by_name(wsi, (const unsigned char *) name,
									   (const unsigned char *) value, (int) strlen(value), p, end);
}

/*
 * Writes a complete response, as metrics.c's http_reply() does; body has
 * LWS_PRE bytes of room before it.  Returns what the lws callback returns.
 *
 * The security headers (Content-Security-Policy with script-src, style-src
 * and connect-src 'self', X-Content-Type-Options, X-Frame-Options,
 * Referrer-Policy: no-referrer, which matters as the page URL carries a JWT)
 * are added by libwebsockets itself: the worker's context sets
 * LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE.
 */
static int
reply(struct lws *wsi, unsigned int status, const char *content_type,
	  unsigned char *body, size_t len)
{
	unsigned char hdr[LWS_PRE + 2048];
	unsigned char *start = hdr + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = hdr + sizeof(hdr) - 1;

	if (lws_add_http_common_headers(wsi, status, content_type, (lws_filepos_t) len, &p, end) ||
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
									 (const unsigned char *) "no-cache", 8, &p, end) ||
		(status == HTTP_STATUS_METHOD_NOT_ALLOWED &&
		 add_header(wsi, "allow:", "GET", &p, end)) ||
		lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	if (len > 0 && lws_write(wsi, body, len, LWS_WRITE_HTTP_FINAL) < (int) len)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* A short text/plain answer (404, 405, 503). */
static int
reply_text(struct lws *wsi, unsigned int status, const char *text)
{
	unsigned char buf[LWS_PRE + 256];
	size_t		len = Min(strlen(text), sizeof(buf) - LWS_PRE);

	memcpy(buf + LWS_PRE, text, len);
	return reply(wsi, status, "text/plain; charset=utf-8", buf + LWS_PRE, len);
}

static int
not_found(struct lws *wsi)
{
	return reply_text(wsi, HTTP_STATUS_NOT_FOUND, "Not found\n");
}

/*
 * The real path of collab.ui_directory/<name> into out, when it is a path
 * inside the real directory that is itself plain.
 */
static bool
resolve(const char *name, char *out)
{
	char		root[PATH_MAX];
	char		want[PATH_MAX];
	size_t		root_len;
	int			n;

	if (realpath(collab_ui_directory, root) == NULL)
		return false;
	n = snprintf(want, sizeof(want), "%s/%s", root, name);
	if (n < 0 || n >= (int) sizeof(want))
		return false;
	if (realpath(want, out) == NULL)
		return false;
	root_len = strlen(root);
	if (root_len == 1)			/* the directory is "/" */
		root_len = 0;
	else if (strncmp(out, root, root_len) != 0)
		return false;
	if (out[root_len] != '/')
		return false;
	/* a symlink may not lead to a hidden or unlisted file either */
	return plain_path(out + root_len + 1) && content_type_of(out) != NULL;
}

/* Sends the file at the real path path, or 404. */
static int
send_file(struct lws *wsi, const char *path, const char *content_type)
{
	struct stat st;
	unsigned char *buf;
	size_t		size;
	size_t		got = 0;
	int			fd;
	int			rc;

	/* O_NONBLOCK: a FIFO must not hang the worker; regular files ignore it */
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return not_found(wsi);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
		st.st_size < 0 || st.st_size > STATIC_MAX_FILE_SIZE)
	{
		close(fd);
		return not_found(wsi);
	}
	size = (size_t) st.st_size;
	buf = palloc_extended(LWS_PRE + size + 1, MCXT_ALLOC_NO_OOM);
	if (buf == NULL)
	{
		close(fd);
		return reply_text(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "Out of memory\n");
	}
	while (got < size)
	{
		ssize_t		r = read(fd, buf + LWS_PRE + got, size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
		{
			close(fd);
			pfree(buf);
			return not_found(wsi);
		}
		if (r == 0)
			break;				/* the file shrank: send what there is */
		got += (size_t) r;
	}
	close(fd);
	rc = reply(wsi, HTTP_STATUS_OK, content_type, buf + LWS_PRE, got);
	pfree(buf);
	return rc;
}

int
static_http(struct lws *wsi, const char *uri)
{
	const char *name;
	const char *content_type;
	char		path[PATH_MAX];

	if (strcmp(uri, "/") == 0)
		name = "index.html";
	else if (strncmp(uri, "/ui/", 4) == 0)
		name = uri + 4;
	else
		return -2;

	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
		return reply_text(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, "Method not allowed\n");
	if (collab_ui_directory == NULL || collab_ui_directory[0] == '\0')
		return reply_text(wsi, HTTP_STATUS_NOT_FOUND,
						  "Not found: the collab UI is off (collab.ui_directory is empty)\n");
	if (!plain_path(name) || (content_type = content_type_of(name)) == NULL ||
		!resolve(name, path))
		return not_found(wsi);
	return send_file(wsi, path, content_type);
}
