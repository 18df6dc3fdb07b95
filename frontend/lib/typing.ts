/** Typing indicators: when to tell the server, and how the indicator reads. */

/** Emit `isTyping: true` at most this often while the person keeps typing. */
export const TYPING_REPEAT_MS = 2000;
/** After this long without a keystroke, `isTyping: false` is sent. */
export const TYPING_IDLE_MS = 3000;
/** A typist not heard from for this long is no longer shown (a lost `false`). */
export const TYPING_EXPIRY_MS = 6000;

/**
 * Decides the `user.typing` events of one composer. `input` is called on each keystroke and
 * says whether to emit `true`; `stop` says whether a `false` is owed (only after a `true`).
 */
export class TypingThrottle {
  private lastTrue = -Infinity;
  private typing = false;

  input(now: number): boolean {
    if (this.typing && now - this.lastTrue < TYPING_REPEAT_MS) return false;
    this.typing = true;
    this.lastTrue = now;
    return true;
  }

  stop(): boolean {
    if (!this.typing) return false;
    this.typing = false;
    this.lastTrue = -Infinity;
    return true;
  }
}

/** "alice is typing…", "alice and bob are typing…", "alice, bob and 2 others are typing…". */
export function typingLabel(names: readonly string[]): string {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
}
