//! The checksum step's logic, shared by the command (`checksum.zig`) and the
//! step component (`checksum-step.zig`).
//!
//! Input:  {"document": <any JSON>, "algorithm": "sha256" | "blake3"}
//! Output: {"algorithm", "digest", "bytes"}
//!
//! Digests the document's compact JSON text (numbers exactly as written), so
//! the same document always has the same digest: an audit trail's
//! fingerprint of what a run produced.
const std = @import("std");

pub const Failure = struct { message: []const u8, retryable: bool };
pub const Outcome = union(enum) { ok: []const u8, failed: Failure };

fn failed(message: []const u8, retryable: bool) Outcome {
    return .{ .failed = .{ .message = message, .retryable = retryable } };
}

fn hexDigest(comptime Hash: type, allocator: std.mem.Allocator, bytes: []const u8) ![]const u8 {
    var digest: [Hash.digest_length]u8 = undefined;
    Hash.hash(bytes, &digest, .{});
    return std.fmt.allocPrint(allocator, "{}", .{std.fmt.fmtSliceHexLower(&digest)});
}

/// The step's output JSON, or why it failed; `log` receives one line.
pub fn run(allocator: std.mem.Allocator, input: []const u8, log: *const fn ([]const u8) void) Outcome {
    const parsed = std.json.parseFromSliceLeaky(std.json.Value, allocator, input, .{ .parse_numbers = false }) catch
        return failed("input is not JSON", false);
    if (parsed != .object) return failed("input must be a JSON object", false);
    const request = parsed.object;

    if (request.get("simulate_failure")) |simulate| {
        if (simulate != .object) return failed("simulate_failure must be an object", false);
        const message = simulate.object.get("message") orelse return failed("simulate_failure.message is missing", false);
        const retryable = simulate.object.get("retryable") orelse std.json.Value{ .bool = false };
        return failed(if (message == .string) message.string else "simulated failure", retryable == .bool and retryable.bool);
    }

    const document = request.get("document") orelse return failed("document is missing", false);
    const algorithm = if (request.get("algorithm")) |a| switch (a) {
        .string => |name| name,
        else => return failed("algorithm must be a string", false),
    } else "sha256";

    const text = std.json.stringifyAlloc(allocator, document, .{}) catch return failed("out of memory", true);
    const digest = (if (std.mem.eql(u8, algorithm, "sha256"))
        hexDigest(std.crypto.hash.sha2.Sha256, allocator, text)
    else if (std.mem.eql(u8, algorithm, "blake3"))
        hexDigest(std.crypto.hash.Blake3, allocator, text)
    else
        return failed("algorithm must be sha256 or blake3", false)) catch return failed("out of memory", true);

    log(std.fmt.allocPrint(allocator, "{s} of {d} bytes of JSON", .{ algorithm, text.len }) catch "digested");
    const output = std.json.stringifyAlloc(allocator, .{ .algorithm = algorithm, .digest = digest, .bytes = text.len }, .{}) catch
        return failed("out of memory", true);
    return .{ .ok = output };
}
