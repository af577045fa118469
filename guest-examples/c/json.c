#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *at, *end;
  const char *error;
  int depth;
} parser;

static void skip_space(parser *p) {
  while (p->at < p->end && (*p->at == ' ' || *p->at == '\t' || *p->at == '\n' || *p->at == '\r')) p->at++;
}

static bool fail(parser *p, const char *message) {
  if (!p->error) p->error = message;
  return false;
}

static bool parse_value(parser *p, json_value *out);

static void put_utf8(char **w, unsigned code) {
  char *o = *w;
  if (code < 0x80) {
    *o++ = (char)code;
  } else if (code < 0x800) {
    *o++ = (char)(0xC0 | (code >> 6));
    *o++ = (char)(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    *o++ = (char)(0xE0 | (code >> 12));
    *o++ = (char)(0x80 | ((code >> 6) & 0x3F));
    *o++ = (char)(0x80 | (code & 0x3F));
  } else {
    *o++ = (char)(0xF0 | (code >> 18));
    *o++ = (char)(0x80 | ((code >> 12) & 0x3F));
    *o++ = (char)(0x80 | ((code >> 6) & 0x3F));
    *o++ = (char)(0x80 | (code & 0x3F));
  }
  *w = o;
}

static bool hex4(parser *p, unsigned *code) {
  if (p->end - p->at < 4) return fail(p, "truncated \\u escape");
  *code = 0;
  for (int i = 0; i < 4; i++) {
    char c = *p->at++;
    *code <<= 4;
    if (c >= '0' && c <= '9') *code |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') *code |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') *code |= (unsigned)(c - 'A' + 10);
    else return fail(p, "bad \\u escape");
  }
  return true;
}

/* Parses a string at p->at (after the opening quote) into a new buffer. */
static bool parse_string(parser *p, char **out, size_t *length) {
  char *buffer = malloc((size_t)(p->end - p->at) + 1), *w = buffer;
  if (!buffer) return fail(p, "out of memory");
  while (p->at < p->end && *p->at != '"') {
    unsigned char c = (unsigned char)*p->at++;
    if (c < 0x20) { free(buffer); return fail(p, "control character in string"); }
    if (c != '\\') { *w++ = (char)c; continue; }
    if (p->at >= p->end) break;
    char e = *p->at++;
    switch (e) {
      case '"': *w++ = '"'; break;
      case '\\': *w++ = '\\'; break;
      case '/': *w++ = '/'; break;
      case 'b': *w++ = '\b'; break;
      case 'f': *w++ = '\f'; break;
      case 'n': *w++ = '\n'; break;
      case 'r': *w++ = '\r'; break;
      case 't': *w++ = '\t'; break;
      case 'u': {
        unsigned code;
        if (!hex4(p, &code)) { free(buffer); return false; }
        if (code >= 0xD800 && code < 0xDC00) {
          unsigned low;
          if (p->end - p->at < 6 || p->at[0] != '\\' || p->at[1] != 'u') { free(buffer); return fail(p, "lone surrogate"); }
          p->at += 2;
          if (!hex4(p, &low) || low < 0xDC00 || low > 0xDFFF) { free(buffer); return fail(p, "bad surrogate pair"); }
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        put_utf8(&w, code);
        break;
      }
      default: free(buffer); return fail(p, "bad escape in string");
    }
  }
  if (p->at >= p->end) { free(buffer); return fail(p, "unterminated string"); }
  p->at++;
  *w = '\0';
  *out = buffer;
  *length = (size_t)(w - buffer);
  return true;
}

static bool literal(parser *p, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(p->end - p->at) < n || memcmp(p->at, word, n) != 0) return fail(p, "unexpected character");
  p->at += n;
  return true;
}

static bool parse_number(parser *p, json_value *out) {
  char buffer[64];
  size_t n = 0;
  while (p->at + n < p->end && n < sizeof buffer - 1 && strchr("+-0123456789.eE", p->at[n])) n++;
  memcpy(buffer, p->at, n);
  buffer[n] = '\0';
  char *end;
  out->number = strtod(buffer, &end);
  if (n == 0 || end != buffer + n || !isfinite(out->number)) return fail(p, "bad number");
  out->kind = JSON_NUMBER;
  p->at += n;
  return true;
}

static bool parse_container(parser *p, json_value *out, bool object) {
  char close = object ? '}' : ']';
  size_t capacity = 0;
  out->kind = object ? JSON_OBJECT : JSON_ARRAY;
  if (++p->depth > 128) return fail(p, "nesting too deep");
  skip_space(p);
  if (p->at < p->end && *p->at == close) { p->at++; p->depth--; return true; }
  for (;;) {
    if (out->length == capacity) {
      capacity = capacity ? capacity * 2 : 8;
      json_value *items = realloc(out->items, capacity * sizeof *items);
      if (!items) return fail(p, "out of memory");
      out->items = items;
      if (object) {
        char **keys = realloc(out->keys, capacity * sizeof *keys);
        if (!keys) return fail(p, "out of memory");
        out->keys = keys;
      }
    }
    json_value *item = &out->items[out->length];
    memset(item, 0, sizeof *item);
    if (object) {
      size_t key_length;
      skip_space(p);
      if (p->at >= p->end || *p->at != '"') return fail(p, "expected a member name");
      p->at++;
      if (!parse_string(p, &out->keys[out->length], &key_length)) return false;
      skip_space(p);
      if (p->at >= p->end || *p->at++ != ':') { free(out->keys[out->length]); return fail(p, "expected ':'"); }
    }
    out->length++;
    if (!parse_value(p, item)) return false;
    skip_space(p);
    if (p->at < p->end && *p->at == ',') { p->at++; continue; }
    if (p->at < p->end && *p->at == close) { p->at++; p->depth--; return true; }
    return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

static bool parse_value(parser *p, json_value *out) {
  skip_space(p);
  if (p->at >= p->end) return fail(p, "unexpected end of input");
  switch (*p->at) {
    case '{': p->at++; return parse_container(p, out, true);
    case '[': p->at++; return parse_container(p, out, false);
    case '"': p->at++; out->kind = JSON_STRING; return parse_string(p, &out->string, &out->length);
    case 't': out->kind = JSON_BOOL; out->boolean = true; return literal(p, "true");
    case 'f': out->kind = JSON_BOOL; out->boolean = false; return literal(p, "false");
    case 'n': out->kind = JSON_NULL; return literal(p, "null");
    default: return parse_number(p, out);
  }
}

static void free_children(json_value *value) {
  for (size_t i = 0; i < value->length && (value->kind == JSON_ARRAY || value->kind == JSON_OBJECT); i++) {
    free_children(&value->items[i]);
    if (value->kind == JSON_OBJECT) free(value->keys[i]);
  }
  free(value->items);
  free(value->keys);
  free(value->string);
}

json_value *json_parse(const char *text, size_t length, const char **error) {
  parser p = {text, text + length, NULL, 0};
  json_value *root = calloc(1, sizeof *root);
  if (!root) { *error = "out of memory"; return NULL; }
  if (parse_value(&p, root)) {
    skip_space(&p);
    if (p.at == p.end) return root;
    fail(&p, "text after the JSON value");
  }
  *error = p.error;
  json_free(root);
  return NULL;
}

void json_free(json_value *value) {
  if (!value) return;
  free_children(value);
  free(value);
}

const json_value *json_get(const json_value *object, const char *key) {
  if (!object || object->kind != JSON_OBJECT) return NULL;
  for (size_t i = 0; i < object->length; i++)
    if (strcmp(object->keys[i], key) == 0) return &object->items[i];
  return NULL;
}

static void append_bytes(json_buffer *out, const char *bytes, size_t n) {
  if (out->length + n + 1 > out->capacity) {
    size_t capacity = out->capacity ? out->capacity : 256;
    while (capacity < out->length + n + 1) capacity *= 2;
    char *data = realloc(out->data, capacity);
    if (!data) abort();
    out->data = data;
    out->capacity = capacity;
  }
  memcpy(out->data + out->length, bytes, n);
  out->length += n;
  out->data[out->length] = '\0';
}

void json_append(json_buffer *out, const char *text) { append_bytes(out, text, strlen(text)); }

void json_append_string(json_buffer *out, const char *text) {
  append_bytes(out, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
    char escaped[8];
    if (*c == '"' || *c == '\\') {
      escaped[0] = '\\', escaped[1] = (char)*c;
      append_bytes(out, escaped, 2);
    } else if (*c < 0x20) {
      snprintf(escaped, sizeof escaped, "\\u%04x", *c);
      append_bytes(out, escaped, 6);
    } else {
      append_bytes(out, (const char *)c, 1);
    }
  }
  append_bytes(out, "\"", 1);
}

void json_append_number(json_buffer *out, double number) {
  char text[32];
  if (number == (double)(long long)number && fabs(number) < 1e15) snprintf(text, sizeof text, "%lld", (long long)number);
  else snprintf(text, sizeof text, "%.15g", number);
  json_append(out, text);
}
