/**
 * Messages this tab wrote that are not stored yet. They show at once as pending, go out one at
 * a time in the order written, and keep their client_message_id through every retry so the
 * server stores each once. A rate-limit block holds them until it ends.
 */
import { blockEnd } from "../countdown";
import { newOutgoing, sendOutcome, setStatus, textWithFile, type Outgoing } from "../timeline";
import { quoteOf } from "../changes";
import type { FileRef, Message, RateLimitedEvent } from "../types";
import type { Session } from "./session";
import type { Sync } from "./sync";
import type { TypingIndicators } from "./typing";

export class Outbox {
  private readonly session: Session;
  private readonly sync: Sync;
  private readonly typing: TypingIndicators;
  private readonly uuid: () => string;
  private pumping = false;

  constructor(session: Session, sync: Sync, typing: TypingIndicators, uuid: () => string) {
    this.session = session;
    this.sync = sync;
    this.typing = typing;
    this.uuid = uuid;
  }

  /**
   * Queues a message for the open channel, with an uploaded file if given; it shows at once
   * as pending. `replyTo` is the message it answers.
   */
  send(text: string, file?: FileRef, replyTo?: Message): void {
    const channel = this.session.store.state.current;
    const trimmed = textWithFile(text, file);
    if (!channel || !trimmed) return;
    this.typing.stop();
    const o = newOutgoing(channel, trimmed, this.uuid(), new Date(), false, file, replyTo ? quoteOf(replyTo) : undefined);
    this.session.store.updateChannel(channel, (c) => ({ ...c, outgoing: [...c.outgoing, o] }));
    void this.pump();
  }

  /** Sends a failed message again, with the same client_message_id. */
  retry(clientMessageId: string): void {
    const channel = this.session.store.state.current;
    if (!channel) return;
    this.session.store.updateChannel(channel, (c) => ({
      ...c,
      outgoing: setStatus(c.outgoing, clientMessageId, "queued"),
    }));
    void this.pump();
  }

  /** Gives up on a failed message. */
  discard(clientMessageId: string): void {
    const channel = this.session.store.state.current;
    if (!channel) return;
    this.session.store.updateChannel(channel, (c) => ({
      ...c,
      outgoing: c.outgoing.filter((o) => o.client_message_id !== clientMessageId),
    }));
  }

  /** Sends the open channel's queued messages one at a time, in the order they were written. */
  async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        const channel = this.session.store.state.current;
        if (!channel || !this.canSend(channel)) return;
        const next = this.session.store.channel(channel).outgoing.find((o) => o.status === "queued");
        if (!next) return;
        await this.sendOne(channel, next);
      }
    } finally {
      this.pumping = false;
    }
  }

  onRateLimited = (notice: RateLimitedEvent): void => {
    this.block(notice ?? {});
  };

  private canSend(channel: string): boolean {
    const { socket, store } = this.session;
    return (
      socket.connected &&
      this.session.joined === channel &&
      store.state.current === channel &&
      !(store.state.blockedUntil && store.state.blockedUntil > Date.now())
    );
  }

  private async sendOne(channel: string, o: Outgoing): Promise<void> {
    const { store } = this.session;
    const id = o.client_message_id;
    store.updateChannel(channel, (c) => ({ ...c, outgoing: setStatus(c.outgoing, id, "sending") }));
    const ack = await this.session.emitAck<{ message: Message; duplicate: boolean }>("message.send", {
      text: o.text,
      channel,
      client_message_id: id,
      // The stored message gets the file's size, image size and thumbnail from the upload.
      ...(o.file ? { file: { url: o.file.url, name: o.file.name, type: o.file.type } } : {}),
      ...(o.reply_to ? { reply_to: o.reply_to.id } : {}),
    });
    const outcome = sendOutcome(ack, this.session.socket.connected);
    switch (outcome.kind) {
      case "confirmed":
        this.sync.absorb(channel, [outcome.message]);
        // A stored message always settles its outgoing copy, whoever sent it back.
        store.updateChannel(channel, (c) => ({
          ...c,
          outgoing: c.outgoing.filter((x) => x.client_message_id !== id),
        }));
        break;
      case "rate_limited":
        store.updateChannel(channel, (c) => ({ ...c, outgoing: setStatus(c.outgoing, id, "queued") }));
        this.block({ retry_after_ms: outcome.retryAfterMs });
        break;
      case "requeue":
        store.updateChannel(channel, (c) => ({ ...c, outgoing: setStatus(c.outgoing, id, "queued") }));
        break;
      case "failed":
        store.updateChannel(channel, (c) => ({
          ...c,
          outgoing: setStatus(c.outgoing, id, "failed", outcome.error),
        }));
        break;
    }
  }

  private block(notice: { retry_after_ms?: number; until?: string }): void {
    const { store } = this.session;
    const receivedAt = Date.now();
    // A refusal always waits a little, so a block that is just ending cannot spin the outbox.
    const until = Math.max(blockEnd(notice, receivedAt), receivedAt + 500);
    store.set({
      blockedUntil: Math.max(until, store.state.blockedUntil ?? 0),
      // The countdown's clock is never older than the latest notice, so it never shows more
      // than the server said.
      blockedAt: receivedAt,
    });
    this.session.later("unblock", Math.max(0, (store.state.blockedUntil ?? until) - receivedAt) + 50, () => {
      store.set({ blockedUntil: null, blockedAt: null });
      void this.pump();
    });
  }
}
