/** Shapes of the banter wire contract (docs/PROTOCOL.md) that the app uses. */

export interface User {
  id: string;
  username: string;
  email: string | null;
}

export interface Channel {
  name: string;
  description: string | null;
  private: boolean;
  createdAt: string;
  /** The oldest seq the channel still keeps; retention removed the ones below it. */
  first_seq?: number;
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
