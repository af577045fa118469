/* A small JSON reader and writer for the C examples: parses a whole document
 * into a tree (numbers as double, strings unescaped to UTF-8, \u escapes
 * included) and appends JSON text to a growable buffer. Public domain style
 * example code: enough for a step's input, not a general-purpose library. */
#ifndef SANDSTEP_EXAMPLE_JSON_H
#define SANDSTEP_EXAMPLE_JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_kind;

typedef struct json_value {
  json_kind kind;
  bool boolean;
  double number;
  char *string;               /* JSON_STRING: NUL-terminated UTF-8 */
  size_t length;              /* items (array), members (object), bytes (string) */
  struct json_value *items;   /* JSON_ARRAY / JSON_OBJECT values */
  char **keys;                /* JSON_OBJECT member names */
} json_value;

/* Parses `text`; on failure returns NULL and points *error at a message. */
json_value *json_parse(const char *text, size_t length, const char **error);
void json_free(json_value *value);
/* The member named `key` of an object, or NULL. */
const json_value *json_get(const json_value *object, const char *key);

typedef struct {
  char *data;
  size_t length, capacity;
} json_buffer;

void json_append(json_buffer *out, const char *text);
void json_append_string(json_buffer *out, const char *text); /* quoted and escaped */
void json_append_number(json_buffer *out, double number);

#endif
