/**
 * Shapes of the banter wire contract (docs/PROTOCOL.md) that the app uses. Messages, their
 * files, quotes and reactions, and channels come from the server's own types
 * (`./generated`, written by scripts/types.sh from src/contract.rs and checked in CI).
 */

import type { ChannelView } from "./generated/ChannelView";
export type { FileRef } from "./generated/FileRef";
export type { Message } from "./generated/Message";
export type { Quote as ReplyQuote } from "./generated/Quote";
export type { Reaction } from "./generated/Reaction";
import type { Message } from "./generated/Message";

/** A channel as the API lists it. */
export type Channel = ChannelView;

export interface User {
  id: string;
  username: string;
  email: string | null;
  /** An administrator of this deployment (`GET /api/auth/me` says so). */
  admin?: boolean;
}

/** A user as `GET /api/users/:name` and the direct-message list show them. */
export interface UserInfo {
  id: string;
  username: string;
  online: boolean;
  /** When their last connection closed (absent while online, or never seen). */
  last_seen?: string;
}

/** A direct-message channel and the other person in it. */
export interface DirectMessage {
  channel: Channel;
  user: UserInfo;
}

export interface OnlineUser {
  userId: string;
  username: string;
}

export interface ApiErrorBody {
  code: string;
  message: string;
  errors?: { field: string; message: string }[];
  retry_after_ms?: number;
}

/** An acknowledgement: `{ok: true, ...body}` or `{ok: false, error}`. */
export type Ack<T> = ({ ok: true } & T) | { ok: false; error: ApiErrorBody };

export interface UserStatusEvent {
  userId: string;
  username: string;
  status: "online" | "offline";
}

export interface UserTypingEvent {
  userId: string;
  username: string;
  channel: string;
  isTyping: boolean;
}

export interface ChannelPresenceEvent {
  channel: string;
  online: number;
}

export interface RateLimitedEvent {
  retry_after_ms: number;
  until: string;
}

export interface MessageUpdatedEvent {
  channel: string;
  id: string;
  seq: number;
  change: number;
  text: string;
  edited_at: string;
}

export interface MessageDeletedEvent {
  channel: string;
  id: string;
  seq: number;
  change: number;
}

export interface MessageReactionsEvent {
  channel: string;
  id: string;
  seq: number;
  change: number;
  reactions: { emoji: string; count: number }[];
  user_id: string;
  emoji: string;
  added: boolean;
}

/** Any change to a stored message, as broadcast. */
export type MessageChange =
  | ({ kind: "updated" } & MessageUpdatedEvent)
  | ({ kind: "deleted" } & MessageDeletedEvent)
  | ({ kind: "reactions" } & MessageReactionsEvent);

export interface MentionEvent {
  channel: string;
  message: Message;
}

export interface ChannelReadEvent {
  channel: string;
  read_seq: number;
}

export interface ChannelRemovedEvent {
  channel: string;
}
