import { describe, expect, it } from "vitest";
import { fieldSentence } from "./api";
import { avatarColor, initials } from "./avatar";
import { reconnectDelay } from "./backoff";
import { blockEnd, formatCountdown, secondsLeft } from "./countdown";
import { isSafeFileUrl } from "./links";
import { TypingThrottle, typingLabel } from "./typing";

describe("rate-limit countdown", () => {
  it("counts from the notice's arrival with retry_after_ms, whatever the clocks say", () => {
    expect(blockEnd({ retry_after_ms: 30000, until: "1999-01-01T00:00:00Z" }, 1000)).toBe(31000);
    expect(blockEnd({ until: "2025-01-01T00:00:30Z" }, 0)).toBe(Date.parse("2025-01-01T00:00:30Z"));
  });

  it("rounds up and never shows zero while blocked", () => {
    expect(secondsLeft(31000, 1000)).toBe(30);
    expect(secondsLeft(31000, 30999)).toBe(1);
    expect(secondsLeft(31000, 31000)).toBe(0);
    expect(secondsLeft(31000, 40000)).toBe(0);
  });

  it("reads as seconds, then minutes and seconds", () => {
    expect(formatCountdown(27)).toBe("27s");
    expect(formatCountdown(65)).toBe("1:05");
    expect(formatCountdown(0)).toBe("0s");
  });
});

describe("file links", () => {
  it("allows http, https and same-origin paths", () => {
    expect(isSafeFileUrl("https://example.com/a.png")).toBe(true);
    expect(isSafeFileUrl("http://example.com/a.png")).toBe(true);
    expect(isSafeFileUrl("/uploads/a.png")).toBe(true);
  });

  it("refuses scripts, data, protocol-relative and disguised links", () => {
    for (const url of [
      "javascript:alert(1)",
      "JAVASCRIPT:alert(1)",
      "data:text/html,<script>alert(1)</script>",
      "//evil.example/a.png",
      "/\\evil.example/a.png",
      " https://example.com",
      "https://exa mple.com",
      "java\nscript:alert(1)",
      "ftp://example.com/a",
      "uploads/a.png",
      "",
    ]) {
      expect(isSafeFileUrl(url), url).toBe(false);
    }
    expect(isSafeFileUrl(42)).toBe(false);
  });
});

describe("avatars", () => {
  it("uses initials of one or two name parts", () => {
    expect(initials("alice")).toBe("AL");
    expect(initials("alice_smith")).toBe("AS");
    expect(initials("guest-4f2a")).toBe("G4");
    expect(initials("")).toBe("?");
  });

  it("gives a name the same colour every time", () => {
    expect(avatarColor("alice")).toBe(avatarColor("Alice"));
  });
});

describe("typing", () => {
  it("tells the server at most every 2 s while typing, and stops once", () => {
    const t = new TypingThrottle();
    expect(t.input(0)).toBe(true);
    expect(t.input(500)).toBe(false);
    expect(t.input(1999)).toBe(false);
    expect(t.input(2000)).toBe(true);
    expect(t.stop()).toBe(true);
    expect(t.stop()).toBe(false);
    expect(t.input(2100)).toBe(true);
  });

  it("names who is typing", () => {
    expect(typingLabel([])).toBe("");
    expect(typingLabel(["alice"])).toBe("alice is typing…");
    expect(typingLabel(["alice", "bob"])).toBe("alice and bob are typing…");
    expect(typingLabel(["a", "b", "c", "d"])).toBe("a, b and 2 others are typing…");
  });
});

describe("reconnect backoff", () => {
  it("grows from 500 ms to at most 5 s with ±50% jitter", () => {
    expect(reconnectDelay(0, 0.5)).toBe(500);
    expect(reconnectDelay(0, 0)).toBe(250);
    expect(reconnectDelay(0, 1)).toBe(750);
    expect(reconnectDelay(3, 0.5)).toBe(4000);
    expect(reconnectDelay(10, 1)).toBe(5000);
    expect(reconnectDelay(10, 0)).toBe(2500);
  });
});

describe("field errors", () => {
  it("read as sentences about their field", () => {
    expect(fieldSentence("Username", "must be 3 to 32 characters")).toBe("Username must be 3 to 32 characters.");
    expect(fieldSentence("Email", "That address is taken.")).toBe("That address is taken.");
    expect(fieldSentence("Password", "")).toBe("Password is not valid.");
  });
});
