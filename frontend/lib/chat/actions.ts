/**
 * What a person does to stored messages and people: edit and delete messages, react, and, for
 * those allowed, moderate (delete others' messages, remove a member, ban). Who may moderate:
 * administrators (`GET /api/auth/me` says so) and a channel's owner (the channel names it in
 * `created_by`).
 */
import { ApiError } from "../api";
import type { Message } from "../types";
import type { Session } from "./session";
import type { Sync } from "./sync";

/** A refused change, in words. */
export function changeError(error: { code: string; message?: string } | undefined, what: string): string {
  switch (error?.code) {
    case undefined:
      return `Could not ${what}: no answer from the server.`;
    case "forbidden":
      return `You may not ${what}.`;
    case "not_found":
      return "That message is no longer there.";
    case "rate_limited":
      return "You’re doing that too fast. Try again in a moment.";
    case "conflict":
      return "This message has as many different reactions as it can hold.";
    case "too_long":
      return "Too long: at most 4,000 characters.";
    case "not_in_channel":
      return "You are not in this channel any more.";
    default:
      return error?.message || `Could not ${what}.`;
  }
}

export class Actions {
  private readonly session: Session;
  private readonly sync: Sync;
  private readonly probing = new Set<string>();

  constructor(session: Session, sync: Sync) {
    this.session = session;
    this.sync = sync;
  }

  private async change(event: string, payload: Record<string, unknown>, what: string): Promise<boolean> {
    const ack = await this.session.emitAck<{ message: Message }>(event, payload);
    if (ack?.ok && ack.message) {
      this.sync.absorb(String(payload.channel), [ack.message]);
      return true;
    }
    this.session.notify(changeError(ack && !ack.ok ? ack.error : undefined, what));
    return false;
  }

  edit(message: Message, text: string): Promise<boolean> {
    return this.change("message.edit", { channel: message.channel, id: message.id, text: text.trim() }, "edit this message");
  }

  delete(message: Message): Promise<boolean> {
    return this.change("message.delete", { channel: message.channel, id: message.id }, "delete this message");
  }

  /** Adds the reader's reaction, or takes it back when they already gave it. */
  react(message: Message, emoji: string): Promise<boolean> {
    const mine = message.reactions?.some((r) => r.emoji === emoji && r.me);
    return this.change(mine ? "reaction.remove" : "reaction.add", { channel: message.channel, id: message.id, emoji }, "react to this message");
  }

  /** Asks once per session whether this user is an administrator. */
  async probeAdmin(): Promise<void> {
    if (this.probing.has("admin")) return;
    this.probing.add("admin");
    try {
      if (await this.session.api.isAdmin()) this.session.store.set({ isAdmin: true });
    } catch {
      this.probing.delete("admin"); // asked again on the next connect
    }
  }

  async removeMember(channel: string, username: string): Promise<boolean> {
    try {
      const answer = await this.session.api.removeMember(channel, username);
      this.session.notify(answer.removed ? `${username} was removed from #${channel}.` : `${username} was not a member of #${channel}.`);
      return true;
    } catch (e) {
      this.session.notify(this.refusal(e, `remove ${username} from #${channel}`));
      return false;
    }
  }

  async ban(username: string): Promise<boolean> {
    try {
      await this.session.api.ban(username);
      this.session.notify(`${username} is banned.`);
      return true;
    } catch (e) {
      this.session.notify(this.refusal(e, `ban ${username}`));
      return false;
    }
  }

  private refusal(e: unknown, what: string): string {
    const message = this.session.handleApiError(e);
    if (e instanceof ApiError && e.status === 403) return `You may not ${what}.`;
    return message;
  }
}
