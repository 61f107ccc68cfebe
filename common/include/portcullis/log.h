/*
 * log.h - one structured line per event (logfmt) on stderr, for the daemons only.
 *
 *   ts=2026-11-22T13:40:00.123Z level=info event=check host=echo.example.com decision=allow
 *
 * Values are quoted and escaped when needed. Never pass a token, cookie or secret.
 */
#ifndef PORTCULLIS_LOG_H
#define PORTCULLIS_LOG_H

enum pc_log_level { PC_LOG_DEBUG, PC_LOG_INFO, PC_LOG_WARN, PC_LOG_ERROR };

void pc_log_set_level(enum pc_log_level level);
/* Parses "debug", "info", "warn", "error". Returns 0 or PC_EINVAL. */
int pc_log_parse_level(const char *s, enum pc_log_level *out);
/*
 * Logs event with key/value string pairs terminated by NULL:
 *   pc_log(PC_LOG_INFO, "check", "host", host, "decision", "allow", NULL);
 * A NULL value is written as "".
 */
void pc_log(enum pc_log_level level, const char *event, ...) __attribute__((sentinel));

#endif
