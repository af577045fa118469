//! checksum: a Sandstep command written in Zig (WASI preview 1); the logic
//! is in digest.zig, shared with the step component checksum-step.zig.
//!
//! Input on stdin, output on stdout (see digest.zig). Bad input exits 1
//! after printing {"error": {"message", "retryable": false}} on stdout.
//! The log line goes to stderr, which Sandstep logs.
const std = @import("std");
const digest = @import("digest.zig");

const max_input = 16 << 20;

fn logStderr(line: []const u8) void {
    std.io.getStdErr().writer().print("{s}\n", .{line}) catch {};
}

fn fail(message: []const u8, retryable: bool) noreturn {
    std.json.stringify(.{ .@"error" = .{ .message = message, .retryable = retryable } }, .{}, std.io.getStdOut().writer()) catch {};
    std.process.exit(1);
}

pub fn main() void {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    defer arena.deinit();
    const allocator = arena.allocator();

    const input = std.io.getStdIn().readToEndAlloc(allocator, max_input) catch fail("cannot read the input", false);
    switch (digest.run(allocator, input, logStderr)) {
        .ok => |output| std.io.getStdOut().writeAll(output) catch fail("cannot write the output", true),
        .failed => |failure| fail(failure.message, failure.retryable),
    }
}
