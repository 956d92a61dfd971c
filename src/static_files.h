/*-------------------------------------------------------------------------
 *
 * static_files.h
 *	  The demo UI's static files on the worker's port (static_files.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_STATIC_FILES_H
#define COLLAB_STATIC_FILES_H

#include <libwebsockets.h>

/* collab.ui_directory, defined in collab.c (empty: the UI is not served) */
extern char *collab_ui_directory;

/* Files larger than this are not served. */
#define STATIC_MAX_FILE_SIZE	(1024 * 1024)

/*
 * GET / (index.html) and GET /ui/<file>; -2 when the path is neither,
 * otherwise what the lws HTTP callback returns.
 */
extern int	static_http(struct lws *wsi, const char *uri);

#endif							/* COLLAB_STATIC_FILES_H */
