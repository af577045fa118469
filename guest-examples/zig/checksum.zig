//! checksum: a Sandstep command written in Zig (WASI preview 1).
//!
//! Input on stdin:  {"document": <any JSON>, "algorithm": "sha256" | "blake3"}
//! Output on stdout: {"algorithm", "digest", "bytes"}
//!
//! Digests the document's compact JSON text (numbers exactly as written), so
//! the same document always has the same digest: an audit trail's fingerprint of what a run produced. Bad
//! input exits 1 after printing {"error": {"message", "retryable": false}} on
//! stdout. Lines on stderr become the step's logs.
const std = @import("std");

const max_input = 16 << 20;

fn fail(message: []const u8, retryable: bool) noreturn {
    const out = std.io.getStdOut().writer();
    std.json.stringify(.{ .@"error" = .{ .message = message, .retryable = retryable } }, .{}, out) catch {};
    std.process.exit(1);
}

fn hexDigest(comptime Hash: type, bytes: []const u8, buf: *[2 * Hash.digest_length]u8) []const u8 {
    var digest: [Hash.digest_length]u8 = undefined;
    Hash.hash(bytes, &digest, .{});
    return std.fmt.bufPrint(buf, "{}", .{std.fmt.fmtSliceHexLower(&digest)}) catch unreachable;
}

pub fn main() void {
    var arena = std.heap.ArenaAllocator.init(std.heap.page_allocator);
    defer arena.deinit();
    const allocator = arena.allocator();

    const input = std.io.getStdIn().readToEndAlloc(allocator, max_input) catch fail("cannot read the input", false);
    const parsed = std.json.parseFromSliceLeaky(std.json.Value, allocator, input, .{ .parse_numbers = false }) catch fail("input is not JSON", false);
    if (parsed != .object) fail("input must be a JSON object", false);
    const request = parsed.object;

    if (request.get("simulate_failure")) |simulate| {
        if (simulate != .object) fail("simulate_failure must be an object", false);
        const message = simulate.object.get("message") orelse fail("simulate_failure.message is missing", false);
        const retryable = simulate.object.get("retryable") orelse std.json.Value{ .bool = false };
        fail(if (message == .string) message.string else "simulated failure", retryable == .bool and retryable.bool);
    }

    const document = request.get("document") orelse fail("document is missing", false);
    const algorithm = if (request.get("algorithm")) |a| switch (a) {
        .string => |name| name,
        else => fail("algorithm must be a string", false),
    } else "sha256";

    const text = std.json.stringifyAlloc(allocator, document, .{}) catch fail("cannot encode the document", false);
    var sha_buf: [64]u8 = undefined;
    var blake_buf: [64]u8 = undefined;
    const digest = if (std.mem.eql(u8, algorithm, "sha256"))
        hexDigest(std.crypto.hash.sha2.Sha256, text, &sha_buf)
    else if (std.mem.eql(u8, algorithm, "blake3"))
        hexDigest(std.crypto.hash.Blake3, text, &blake_buf)
    else
        fail("algorithm must be sha256 or blake3", false);

    std.io.getStdErr().writer().print("{s} of {d} bytes of JSON\n", .{ algorithm, text.len }) catch {};
    std.json.stringify(.{ .algorithm = algorithm, .digest = digest, .bytes = text.len }, .{}, std.io.getStdOut().writer()) catch
        fail("cannot write the output", true);
}
