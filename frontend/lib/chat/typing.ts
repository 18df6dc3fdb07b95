/**
 * Typing in the open channel, both ways: telling the channel this user is typing (throttled,
 * with an owed "stopped" after a pause), and showing who else is, forgetting typists whose
 * "stopped" was lost.
 */
import { TYPING_EXPIRY_MS, TYPING_IDLE_MS, TypingThrottle } from "../typing";
import type { Message, UserTypingEvent } from "../types";
import type { Session } from "./session";

export class TypingIndicators {
  private readonly session: Session;
  private readonly throttle = new TypingThrottle();
  /** Where the last `isTyping: true` went, so the `false` goes there even after a switch. */
  private channel: string | null = null;
  private sweepTimer: ReturnType<typeof setInterval> | null = null;

  constructor(session: Session) {
    this.session = session;
  }

  /** The composer changed: tell the channel this user is typing (throttled). */
  input(hasText: boolean): void {
    const { socket, store } = this.session;
    const channel = store.state.current;
    if (!channel || !socket.connected || this.session.joined !== channel) return;
    if (!hasText) {
      this.stop();
      return;
    }
    if (this.throttle.input(Date.now())) {
      this.channel = channel;
      socket.emit("user.typing", { channel, isTyping: true }, () => {});
    }
    this.session.later("typing-idle", TYPING_IDLE_MS, () => this.stop());
  }

  stop(): void {
    this.session.cancel("typing-idle");
    const channel = this.channel;
    if (this.throttle.stop() && channel && this.session.socket.connected) {
      this.session.socket.emit("user.typing", { channel, isTyping: false }, () => {});
    }
    this.channel = null;
  }

  /** The connection dropped: no `false` can go out, and the next keystroke announces anew. */
  connectionLost(): void {
    this.throttle.stop();
  }

  onUserTyping = (e: UserTypingEvent): void => {
    const { store } = this.session;
    if (!e || e.channel !== store.state.current || e.userId === this.session.user.id) return;
    const rest = store.state.typing.filter((t) => t.userId !== e.userId);
    if (e.isTyping) {
      store.set({
        typing: [...rest, { userId: e.userId, username: e.username, expires: Date.now() + TYPING_EXPIRY_MS }],
      });
      this.ensureSweep();
    } else if (rest.length !== store.state.typing.length) {
      store.set({ typing: rest });
    }
  };

  /** Someone whose message just arrived has stopped typing it. */
  messageArrived(message: Message): void {
    const { store } = this.session;
    const { current, typing } = store.state;
    if (message.channel === current && typing.some((t) => t.userId === message.sender_id)) {
      store.set({ typing: typing.filter((t) => t.userId !== message.sender_id) });
    }
  }

  clearSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  private ensureSweep(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = setInterval(() => {
      const { store } = this.session;
      const now = Date.now();
      const alive = store.state.typing.filter((t) => t.expires > now);
      if (alive.length !== store.state.typing.length) store.set({ typing: alive });
      if (alive.length === 0 && this.sweepTimer) {
        clearInterval(this.sweepTimer);
        this.sweepTimer = null;
      }
    }, 1000);
  }
}
