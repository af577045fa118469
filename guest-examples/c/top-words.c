/* top-words: a Sandstep command written in C (WASI preview 1).
 *
 * Input on stdin:  {"text": "the cat and the hat", "top": 2}
 * Output on stdout: {"words": [{"word": "the", "count": 2}, ...], "total": 5, "distinct": 4}
 *
 * Words are runs of ASCII letters, digits and apostrophes, lower-cased;
 * ranked by count, ties alphabetically; `top` defaults to 10. Bad input
 * exits 1 after printing {"error": {"message", "retryable": false}} on
 * stdout. Lines on stderr become the step's logs. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

typedef struct {
  char *word;
  size_t count;
} entry;

static void fail(const char *message, bool retryable) {
  json_buffer out = {0};
  json_append(&out, "{\"error\":{\"message\":");
  json_append_string(&out, message);
  json_append(&out, retryable ? ",\"retryable\":true}}" : ",\"retryable\":false}}");
  fputs(out.data, stdout);
  exit(1);
}

static int by_count_then_word(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->count != y->count) return x->count < y->count ? 1 : -1;
  return strcmp(x->word, y->word);
}

static char *read_all(FILE *in, size_t *length) {
  size_t capacity = 1 << 16;
  char *data = malloc(capacity);
  *length = 0;
  for (size_t n; data && (n = fread(data + *length, 1, capacity - *length, in)) > 0;) {
    *length += n;
    if (*length == capacity) data = realloc(data, capacity *= 2);
  }
  if (!data) fail("out of memory", true);
  return data;
}

int main(void) {
  size_t length;
  char *input = read_all(stdin, &length);
  const char *parse_error = NULL;
  json_value *request = json_parse(input, length, &parse_error);
  if (!request) {
    char message[160];
    snprintf(message, sizeof message, "input is not JSON: %s", parse_error);
    fail(message, false);
  }
  const json_value *simulate = json_get(request, "simulate_failure");
  if (simulate) {
    const json_value *text = json_get(simulate, "message"), *retryable = json_get(simulate, "retryable");
    fail(text && text->kind == JSON_STRING ? text->string : "simulated failure",
         retryable && retryable->kind == JSON_BOOL && retryable->boolean);
  }
  const json_value *text = json_get(request, "text");
  if (!text || text->kind != JSON_STRING) fail("text must be a string", false);
  const json_value *top_field = json_get(request, "top");
  size_t top = 10;
  if (top_field) {
    if (top_field->kind != JSON_NUMBER || top_field->number < 0 || top_field->number != (size_t)top_field->number)
      fail("top must be a whole number >= 0", false);
    top = (size_t)top_field->number;
  }

  entry *entries = NULL;
  size_t distinct = 0, capacity = 0, total = 0;
  for (const char *at = text->string; *at;) {
    while (*at && !(isalnum((unsigned char)*at) || *at == '\'')) at++;
    const char *start = at;
    while (*at && (isalnum((unsigned char)*at) || *at == '\'')) at++;
    size_t n = (size_t)(at - start);
    if (n == 0) continue;
    char *word = strndup(start, n);
    for (char *c = word; *c; c++) *c = (char)tolower((unsigned char)*c);
    total++;
    size_t i = 0;
    while (i < distinct && strcmp(entries[i].word, word) != 0) i++;
    if (i < distinct) {
      entries[i].count++;
      free(word);
      continue;
    }
    if (distinct == capacity) entries = realloc(entries, (capacity = capacity ? capacity * 2 : 64) * sizeof *entries);
    if (!entries) fail("out of memory", true);
    entries[distinct++] = (entry){word, 1};
  }
  qsort(entries, distinct, sizeof *entries, by_count_then_word);

  json_buffer out = {0};
  json_append(&out, "{\"words\":[");
  for (size_t i = 0; i < distinct && i < top; i++) {
    json_append(&out, i ? ",{\"word\":" : "{\"word\":");
    json_append_string(&out, entries[i].word);
    json_append(&out, ",\"count\":");
    json_append_number(&out, (double)entries[i].count);
    json_append(&out, "}");
  }
  json_append(&out, "],\"total\":");
  json_append_number(&out, (double)total);
  json_append(&out, ",\"distinct\":");
  json_append_number(&out, (double)distinct);
  json_append(&out, "}");
  fputs(out.data, stdout);
  fprintf(stderr, "%zu words, %zu distinct\n", total, distinct);
  return 0;
}
