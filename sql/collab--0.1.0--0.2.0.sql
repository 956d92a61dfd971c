/* collab--0.1.0--0.2.0.sql: upgrade from 0.1.0 to 0.2.0 */

\echo Use "ALTER EXTENSION collab UPDATE TO '0.2.0'" to load this file. \quit

/*
 * A new installation runs collab--0.1.0.sql and then this script (CREATE
 * EXTENSION follows the update path when a version has no install script of
 * its own), so an upgraded database and a new one have the same objects.
 * Each section below owns one concern; objects it replaces are replaced
 * with CREATE OR REPLACE or dropped and created again.
 */

/* ------------------------------------------------------------------------
 * Access control: grants, permissions, session revocation, access trail
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Responsiveness and budgets
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Revisions: every accepted save kept, hash-chained
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Fencing tokens across failover
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Shared payload builders and comments on every object
 * ------------------------------------------------------------------------ */
