/** Shapes of the banter wire contract (docs/PROTOCOL.md) that the app uses. */

export interface User {
  id: string;
  username: string;
  email: string | null;
  /** An administrator of this deployment (`GET /api/auth/me` says so). */
  admin?: boolean;
}

export interface Channel {
  name: string;
  description: string | null;
  private: boolean;
  createdAt: string;
  /** The oldest seq the channel still keeps; retention removed the ones below it. */
  first_seq?: number;
  /** A direct-message channel (listed by `GET /api/dms`, not with the channels). */
  dm?: boolean;
  /** The id of the channel's owner (its creator), who may moderate it. */
  created_by?: string;
  /** The user's read position, for channels they have one in. */
  read_seq?: number;
  /** Messages after the read position that are neither the user's own nor deleted. */
  unread?: number;
  /** Of those, the ones that mention the user. */
  unread_mentions?: number;
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

/**
 * A message's file: a link (`url`, `name`, `type`) as sent; a file uploaded to banter also
 * has its size in bytes, and an image its pixel size and a small JPEG `thumbnail`.
 */
export interface FileRef {
  url: string;
  name: string;
  type: string;
  size?: number;
  width?: number;
  height?: number;
  thumbnail?: string;
}

/** A stored message, as `message.new`, history and `messages.sync` carry it. */
export interface Message {
  id: string;
  channel: string;
  seq: number;
  text: string;
  sender: string;
  sender_id: string | null;
  client_message_id: string;
  createdAt: string;
  file?: FileRef;
  /** When the text was last edited. */
  edited_at?: string;
  /** A tombstone: the text is "" and there is no file. */
  deleted?: boolean;
  /** The channel's change number of the message's last change. */
  change?: number;
  /** The message this one answers, quoted as it is now. */
  reply_to?: ReplyQuote;
  /** Each emoji with its count; `me` marks the reader's own (where the server knows it). */
  reactions?: Reaction[];
  /** The ids of the users the text mentions. */
  mentions?: string[];
}

export interface ReplyQuote {
  id: string;
  seq: number;
  sender?: string;
  /** The first 200 characters of its text. */
  text?: string;
  deleted?: boolean;
}

export interface Reaction {
  emoji: string;
  count: number;
  me?: boolean;
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
