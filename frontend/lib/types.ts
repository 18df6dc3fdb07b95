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
export type { UserStatus as UserStatusEvent } from "./generated/UserStatus";
export type { UserTyping as UserTypingEvent } from "./generated/UserTyping";
export type { ChannelPresence as ChannelPresenceEvent } from "./generated/ChannelPresence";
export type { RateLimited as RateLimitedEvent } from "./generated/RateLimited";
export type { MessageUpdated as MessageUpdatedEvent } from "./generated/MessageUpdated";
export type { MessageDeleted as MessageDeletedEvent } from "./generated/MessageDeleted";
export type { MessageReactions as MessageReactionsEvent } from "./generated/MessageReactions";
export type { Mention as MentionEvent } from "./generated/Mention";
export type { ChannelRead as ChannelReadEvent } from "./generated/ChannelRead";
export type { ChannelRemoved as ChannelRemovedEvent } from "./generated/ChannelRemoved";
export type { ChannelCreated as ChannelCreatedEvent } from "./generated/ChannelCreated";
import type { MessageDeleted } from "./generated/MessageDeleted";
import type { MessageReactions } from "./generated/MessageReactions";
import type { MessageUpdated } from "./generated/MessageUpdated";

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

/** Any change to a stored message, as broadcast. */
export type MessageChange =
  | ({ kind: "updated" } & MessageUpdated)
  | ({ kind: "deleted" } & MessageDeleted)
  | ({ kind: "reactions" } & MessageReactions);

