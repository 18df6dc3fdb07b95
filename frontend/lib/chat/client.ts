/**
 * The chat session of one browser tab, as the UI sees it: one object to start, stop, read
 * (`subscribe`/`getSnapshot`) and act on. It builds the parts, hands each the ones it
 * depends on, and forwards the UI's calls; the behaviour lives in the parts.
 */
import { api as defaultApi } from "../api";
import type { FileRef, Message, User } from "../types";
import { startUpload, type Upload, type UploadProgress, type UploadSource } from "../uploads";
import { Actions } from "./actions";
import { Channels, type CreateChannelResult } from "./channels";
import { Connection } from "./connection";
import { Outbox } from "./outbox";
import { Presence } from "./presence";
import { Reading, type OpenDmResult } from "./reading";
import { Session, type Api, type SocketLike } from "./session";
import type { ChatStore } from "./store";
import { Sync } from "./sync";
import { TypingIndicators } from "./typing";

export interface ChatOptions {
  socket: SocketLike;
  api?: Api;
  /** The channel to open first (defaults to `general`). */
  initialChannel?: string;
  /** Called when the open channel changes (to keep it in the address bar). */
  onChannelChange?: (name: string) => void;
  uuid?: () => string;
}

export class ChatClient {
  readonly subscribe: ChatStore["subscribe"];
  readonly getSnapshot: ChatStore["getSnapshot"];

  private readonly session: Session;
  private readonly connection: Connection;
  private readonly channels: Channels;
  private readonly sync: Sync;
  private readonly outbox: Outbox;
  private readonly indicators: TypingIndicators;
  private readonly reading: Reading;
  private readonly actions: Actions;

  constructor(user: User, options: ChatOptions) {
    const session = new Session(user, options.socket, options.api ?? defaultApi);
    const typing = new TypingIndicators(session);
    const presence = new Presence(session);
    const reading = new Reading(session);
    const sync = new Sync(session, (message) => {
      typing.messageArrived(message);
      if (message.channel === session.store.state.current) reading.viewed();
    });
    const actions = new Actions(session, sync);
    const outbox = new Outbox(session, sync, typing, options.uuid ?? (() => crypto.randomUUID()));
    const channels = new Channels(session, {
      sync,
      outbox,
      presence,
      typing,
      reading,
      actions,
      onChannelChange: options.onChannelChange,
    });
    reading.openChannel = (name) => channels.select(name);
    reading.refreshChannels = () => channels.refresh();
    this.connection = new Connection(session, {
      channels,
      sync,
      outbox,
      presence,
      typing,
      reading,
      actions,
      initialChannel: options.initialChannel || "general",
    });
    this.reading = reading;
    this.actions = actions;
    this.session = session;
    this.channels = channels;
    this.sync = sync;
    this.outbox = outbox;
    this.indicators = typing;
    this.subscribe = session.store.subscribe;
    this.getSnapshot = session.store.getSnapshot;
  }

  start(): void {
    this.connection.start();
  }

  stop(): void {
    this.connection.stop();
  }

  /** Reconnect now instead of waiting for the next attempt. */
  reconnectNow(): void {
    this.connection.reconnectNow();
  }

  dismissNotice(): void {
    this.session.dismissNotice();
  }

  /** Fetches the channel and direct-message lists (and their unread counts) again. */
  refreshChannels(): Promise<void> {
    return this.reading.refreshAll();
  }

  /** Opens a channel (a private one may ask for its password). */
  selectChannel(name: string): void {
    this.channels.select(name);
  }

  submitPassword(channel: string, password: string): void {
    this.channels.submitPassword(channel, password);
  }

  cancelPassword(): void {
    this.channels.cancelPassword();
  }

  createChannel(name: string, description: string, password: string): Promise<CreateChannelResult> {
    return this.channels.create(name, description, password);
  }

  /** Loads the page just older than the oldest message held. */
  loadOlder(): Promise<void> {
    return this.sync.loadOlder();
  }

  retryLoad(): void {
    this.sync.retryLoad();
  }

  /** Queues a message for the open channel, with an uploaded file if given; it shows at once as pending. */
  send(text: string, file?: FileRef, replyTo?: Message): void {
    this.outbox.send(text, file, replyTo);
  }

  /** Replaces the text of one of the user's messages. */
  edit(message: Message, text: string): Promise<boolean> {
    return this.actions.edit(message, text);
  }

  /** Deletes a message (the user's own, or any as a moderator): it becomes a tombstone. */
  deleteMessage(message: Message): Promise<boolean> {
    return this.actions.delete(message);
  }

  /** Adds the user's reaction with this emoji, or takes it back. */
  react(message: Message, emoji: string): Promise<boolean> {
    return this.actions.react(message, emoji);
  }

  removeMember(channel: string, username: string): Promise<boolean> {
    return this.actions.removeMember(channel, username);
  }

  ban(username: string): Promise<boolean> {
    return this.actions.ban(username);
  }

  /** Opens the direct-message channel with a user, starting it when new. */
  openDm(username: string): Promise<OpenDmResult> {
    return this.reading.openDm(username);
  }

  /** The open channel is on screen again (the read position may move). */
  viewed(): void {
    this.reading.viewed();
  }

  dismissRemoved(): void {
    this.reading.dismissRemoved();
  }

  /**
   * Uploads a file for a message. A refusal because the session is over signs out, as any
   * request's does.
   */
  upload(file: UploadSource, onProgress: (progress: UploadProgress) => void): Upload {
    const upload = startUpload(file, { onProgress });
    upload.done.catch((e) => this.session.handleApiError(e));
    return upload;
  }

  /**
   * A request the UI made itself failed: a refusal because the session is over signs out, as
   * any request's does. Returns the reason in words.
   */
  requestFailed(e: unknown): string {
    return this.session.handleApiError(e);
  }

  /** Sends a failed message again, with the same client_message_id. */
  retry(clientMessageId: string): void {
    this.outbox.retry(clientMessageId);
  }

  /** Gives up on a failed message. */
  discard(clientMessageId: string): void {
    this.outbox.discard(clientMessageId);
  }

  /** The composer changed: tell the channel this user is typing (throttled). */
  typing(hasText: boolean): void {
    this.indicators.input(hasText);
  }
}
