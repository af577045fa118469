//! checksum-step: the checksum step (digest.zig) as a Sandstep step
//! component, written against the component model's canonical ABI by hand:
//! Zig has no wit-bindgen, and the `step` world is small.
//!
//! Build: a core module exporting `run`, `cabi_realloc` and its memory and
//! importing `log`, then `guest-tools component-new --wit` to embed the
//! world's type and make the component (see README.md).
const std = @import("std");
const digest = @import("digest.zig");

/// `import host; log: func(level: level, message: string)`: the level is the
/// enum's index (trace 0, debug 1, info 2, warn 3, error 4).
extern "sandstep:step/host@0.1.0" fn log(level: i32, message: [*]const u8, len: usize) void;

fn logInfo(line: []const u8) void {
    log(2, line.ptr, line.len);
}

/// The host allocates the strings it passes in with this.
export fn cabi_realloc(old: ?[*]u8, old_len: usize, alignment: usize, new_len: usize) [*]u8 {
    const align_: std.mem.Alignment = .fromByteUnits(alignment);
    const new = std.heap.wasm_allocator.rawAlloc(@max(new_len, 1), align_, @returnAddress()) orelse @trap();
    if (old) |previous| @memcpy(new[0..@min(old_len, new_len)], previous[0..@min(old_len, new_len)]);
    return new;
}

/// `result<string, step-error>` in memory: the case (0 ok, 1 err) at 0, then
/// ok: the string's pointer and length at 4 and 8; err: the message's
/// pointer and length at 4 and 8, `retryable` at 12.
var result: extern struct { case: u8, ptr: [*]const u8, len: usize, retryable: u8 } = undefined;

/// `export run: func(ctx: context, input: string) -> result<string, step-error>`,
/// flattened: the context record's strings and attempt, then the input.
export fn run(
    run_id: [*]const u8,
    run_id_len: usize,
    step_id: [*]const u8,
    step_id_len: usize,
    attempt: u32,
    idempotency_key: [*]const u8,
    idempotency_key_len: usize,
    input: [*]const u8,
    input_len: usize,
) *const anyopaque {
    _ = .{ run_id, run_id_len, step_id, step_id_len, idempotency_key, idempotency_key_len };
    var arena = std.heap.ArenaAllocator.init(std.heap.wasm_allocator);
    // Not freed: the instance ends with the attempt.
    const allocator = arena.allocator();
    if (attempt > 1) logInfo(std.fmt.allocPrint(allocator, "attempt {d}", .{attempt}) catch "retrying");
    switch (digest.run(allocator, input[0..input_len], logInfo)) {
        .ok => |output| result = .{ .case = 0, .ptr = output.ptr, .len = output.len, .retryable = 0 },
        .failed => |failure| result = .{
            .case = 1,
            .ptr = failure.message.ptr,
            .len = failure.message.len,
            .retryable = @intFromBool(failure.retryable),
        },
    }
    return &result;
}
