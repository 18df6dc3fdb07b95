/**
 * The chat session's public surface: the client the UI drives and the shapes it reads. The
 * parts behind it stay private to this folder.
 */
export { ChatClient, type ChatOptions } from "./client";
export type { Api, SocketLike } from "./session";
export type { ChannelState, ChatState, ConnectionStatus, Typist } from "./store";
export { PAGE_SIZE } from "./sync";
