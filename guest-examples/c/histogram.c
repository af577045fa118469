/* histogram: a Sandstep step component written in C.
 *
 * Input:  {"values": [7.1, 3.2, 1.1], "buckets": 4}
 * Output: {"count", "min", "max", "buckets": [{"from", "to", "count"}]}
 *
 * Counts the values into `buckets` (default 5, at most 100) equal-width
 * ranges between the smallest and the largest value; the last range includes
 * its upper bound. Bad input fails with a non-retryable error naming what is
 * wrong. `simulate_failure: {"message", "retryable"}` fails on purpose. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "step.h"

static void log_line(sandstep_step_host_level_t level, const char *text) {
  step_string_t message;
  step_string_set(&message, text);
  sandstep_step_host_log(level, &message);
}

static bool fail(step_step_error_t *err, const char *message, bool retryable) {
  step_string_dup(&err->message, message);
  err->retryable = retryable;
  return false;
}

static bool histogram(const json_value *request, json_buffer *out, step_step_error_t *err) {
  char message[160];
  if (!request || request->kind != JSON_OBJECT) return fail(err, "input must be a JSON object", false);

  const json_value *simulate = json_get(request, "simulate_failure");
  if (simulate) {
    const json_value *text = json_get(simulate, "message"), *retryable = json_get(simulate, "retryable");
    return fail(err, text && text->kind == JSON_STRING ? text->string : "simulated failure",
                retryable && retryable->kind == JSON_BOOL && retryable->boolean);
  }

  const json_value *values = json_get(request, "values");
  if (!values || values->kind != JSON_ARRAY) return fail(err, "values must be a list of numbers", false);
  if (values->length == 0) return fail(err, "values is empty: there is nothing to count", false);
  const json_value *buckets_field = json_get(request, "buckets");
  long buckets = 5;
  if (buckets_field) {
    if (buckets_field->kind != JSON_NUMBER || buckets_field->number != (long)buckets_field->number ||
        buckets_field->number < 1 || buckets_field->number > 100)
      return fail(err, "buckets must be a whole number from 1 to 100", false);
    buckets = (long)buckets_field->number;
  }

  double min = 0, max = 0;
  for (size_t i = 0; i < values->length; i++) {
    if (values->items[i].kind != JSON_NUMBER) {
      snprintf(message, sizeof message, "values[%zu] is not a number", i);
      return fail(err, message, false);
    }
    double v = values->items[i].number;
    if (i == 0 || v < min) min = v;
    if (i == 0 || v > max) max = v;
  }

  size_t *counts = calloc((size_t)buckets, sizeof *counts);
  if (!counts) return fail(err, "out of memory", true);
  double width = (max - min) / (double)buckets;
  for (size_t i = 0; i < values->length; i++) {
    long b = width > 0 ? (long)((values->items[i].number - min) / width) : 0;
    counts[b >= buckets ? buckets - 1 : b]++;
  }

  json_append(out, "{\"count\":");
  json_append_number(out, (double)values->length);
  json_append(out, ",\"min\":");
  json_append_number(out, min);
  json_append(out, ",\"max\":");
  json_append_number(out, max);
  json_append(out, ",\"buckets\":[");
  for (long b = 0; b < buckets; b++) {
    json_append(out, b ? ",{\"from\":" : "{\"from\":");
    json_append_number(out, min + width * (double)b);
    json_append(out, ",\"to\":");
    json_append_number(out, b == buckets - 1 ? max : min + width * (double)(b + 1));
    json_append(out, ",\"count\":");
    json_append_number(out, (double)counts[b]);
    json_append(out, "}");
  }
  json_append(out, "]}");
  free(counts);

  snprintf(message, sizeof message, "counted %zu values into %ld buckets", values->length, buckets);
  log_line(SANDSTEP_STEP_HOST_LEVEL_INFO, message);
  return true;
}

bool exports_step_run(step_context_t *ctx, step_string_t *input, step_string_t *ret, step_step_error_t *err) {
  const char *parse_error = NULL;
  json_value *request = json_parse((const char *)input->ptr, input->len, &parse_error);
  json_buffer out = {0};
  bool ok;
  if (!request) {
    char message[160];
    snprintf(message, sizeof message, "input is not JSON: %s", parse_error);
    ok = fail(err, message, false);
  } else {
    ok = histogram(request, &out, err);
  }
  if (ok) {
    ret->ptr = (uint8_t *)out.data;
    ret->len = out.length;
  } else {
    free(out.data);
  }
  json_free(request);
  step_string_free(input);
  step_context_free(ctx);
  return ok;
}
