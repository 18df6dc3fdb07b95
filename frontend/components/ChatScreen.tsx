"use client";

import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore, type DragEvent } from "react";
import { io } from "socket.io-client";
import { api } from "@/lib/api";
import { ChatClient, type ChatState, type SocketLike } from "@/lib/chat";
import { typingLabel } from "@/lib/typing";
import type { Message, User } from "@/lib/types";
import { lastSeenLabel } from "@/lib/unread";
import type { UploadProgress } from "@/lib/uploads";
import { ConnectionBanner, RateLimitBanner, RemovedBanner } from "./Banners";
import { CreateChannelDialog, PasswordDialog } from "./ChannelDialogs";
import { ClusterScreen } from "./ClusterScreen";
import { ConfirmDialog, NewDmDialog, type Confirmation } from "./ConversationDialogs";
import { Composer, type ComposerHandle } from "./Composer";
import { ConnectionBadge } from "./ConnectionBadge";
import { Drawer } from "./Drawer";
import { AtIcon, CloseIcon, HashIcon, LockIcon, MenuIcon, UploadIcon, UsersIcon } from "./icons";
import { MessagePane, type MessageActions, type Permissions } from "./MessagePane";
import { OnlinePanel } from "./OnlinePanel";
import { Sidebar } from "./Sidebar";

function channelFromAddress(): string {
  const raw = decodeURIComponent(window.location.hash.replace(/^#/, "")).trim().toLowerCase();
  return /^[a-z0-9_-]{1,64}$/.test(raw) ? raw : "general";
}

/** One socket for the whole session of this tab, created once on the client. */
function createClient(user: User): ChatClient {
  const socket = io({
    path: "/socket.io",
    withCredentials: true,
    autoConnect: false,
    reconnection: true,
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
    randomizationFactor: 0.5,
  });
  return new ChatClient(user, {
    socket: socket as unknown as SocketLike,
    initialChannel: channelFromAddress(),
    onChannelChange: (name) => window.history.replaceState(null, "", `#${name}`),
  });
}

/** The clock, ticking every second while a countdown runs and every minute otherwise. */
function useNow(fast: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    // Catch up at once when the pace changes (a countdown must not start from a stale clock).
    const first = setTimeout(() => setNow(Date.now()), 0);
    const t = setInterval(() => setNow(Date.now()), fast ? 250 : 30_000);
    return () => {
      clearTimeout(first);
      clearInterval(t);
    };
  }, [fast]);
  return now;
}

const serverSnapshot = (): ChatState | null => null;

/** Whether a drag carries files (rather than text or a link). */
const draggingFiles = (e: DragEvent) => e.dataTransfer.types.includes("Files");

/** Where a tab tells the others of this browser that it logged out (so theirs is no surprise). */
const LOGOUT_KEY = "banter-logout";
const SESSION_ENDED = "You were signed out: the session expired, or your account was banned or removed.";

/** Whether this browser logged out in some tab within the last minute. */
function loggedOutHere(): boolean {
  try {
    return Date.now() - Number(window.localStorage.getItem(LOGOUT_KEY) ?? 0) < 60_000;
  } catch {
    return false;
  }
}

export function ChatScreen({ user, onSignedOut }: { user: User; onSignedOut: (reason?: string) => void }) {
  const [client] = useState(() => createClient(user));
  const state = useSyncExternalStore(client.subscribe, client.getSnapshot, serverSnapshot) ?? client.getSnapshot();
  const [channelsOpen, setChannelsOpen] = useState(false);
  const [onlineOpen, setOnlineOpen] = useState(false);
  const [onlinePinned, setOnlinePinned] = useState(true);
  const [creating, setCreating] = useState(false);
  /** What the main pane shows: the open conversation, or (administrators) the cluster page. */
  const [page, setPage] = useState<"chat" | "cluster">("chat");
  const [dropping, setDropping] = useState(false);
  const [newDm, setNewDm] = useState(false);
  const [confirmation, setConfirmation] = useState<Confirmation | null>(null);
  const [reply, setReply] = useState<{ channel: string; message: Message } | null>(null);
  const composer = useRef<ComposerHandle>(null);
  const now = Math.max(useNow(state.blockedUntil !== null), state.blockedAt ?? 0);

  useEffect(() => {
    client.start();
    return () => client.stop();
  }, [client]);

  useEffect(() => {
    // Signed out by the server rather than by this browser: say so on the sign-in screen.
    if (state.signedOut) onSignedOut(loggedOutHere() ? undefined : (state.endedReason ?? SESSION_ENDED));
  }, [state.signedOut, state.endedReason, onSignedOut]);

  const current = state.current;
  const dm = state.dms.find((d) => d.channel.name === current);
  const title = dm ? dm.user.username : current ? `#${current}` : "";
  const showCluster = page === "cluster" && state.isAdmin;
  useEffect(() => {
    document.title = showCluster ? "Cluster · banter" : title ? `${title} · banter` : "banter";
  }, [title, showCluster]);

  useEffect(() => {
    const refresh = () => void client.refreshChannels();
    window.addEventListener("focus", refresh);
    return () => window.removeEventListener("focus", refresh);
  }, [client]);

  // A file dropped beside the chat (on the sidebar, say) must not make the browser open it in
  // place of the app.
  useEffect(() => {
    const refuse = (e: globalThis.DragEvent) => {
      if (e.defaultPrevented || !e.dataTransfer?.types.includes("Files")) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "none";
    };
    window.addEventListener("dragover", refuse);
    window.addEventListener("drop", refuse);
    return () => {
      window.removeEventListener("dragover", refuse);
      window.removeEventListener("drop", refuse);
    };
  }, []);

  const logout = useCallback(async () => {
    try {
      window.localStorage.setItem(LOGOUT_KEY, String(Date.now()));
    } catch {
      // Storage may be off; other tabs then just find themselves signed out.
    }
    try {
      await api.logout();
    } catch {
      // The session may already be gone; the screen goes back to sign-in either way.
    }
    client.stop();
    onSignedOut();
  }, [client, onSignedOut]);

  const upload = useCallback((file: File, onProgress: (p: UploadProgress) => void) => client.upload(file, onProgress), [client]);
  const loadOlder = useCallback(() => void client.loadOlder(), [client]);
  const retry = useCallback((id: string) => client.retry(id), [client]);
  const discard = useCallback((id: string) => client.discard(id), [client]);
  const retryLoad = useCallback(() => client.retryLoad(), [client]);
  const sessionEnded = useCallback((e: unknown) => void client.requestFailed(e), [client]);
  const openDm = useCallback(
    async (username: string) => {
      const result = await client.openDm(username);
      if (!result.ok) return result;
      setOnlineOpen(false);
      return { ok: true as const };
    },
    [client],
  );

  const actions = useMemo<MessageActions>(
    () => ({
      reply: (message) => setReply({ channel: message.channel, message }),
      edit: (message, text) => client.edit(message, text),
      askDelete: (message) =>
        setConfirmation({
          title: "Delete this message?",
          description:
            message.sender_id === user.id
              ? "It will be replaced by “This message was deleted” for everyone."
              : `This message by ${message.sender} will be replaced by “This message was deleted” for everyone.`,
          action: "Delete",
          run: () => client.deleteMessage(message),
        }),
      react: (message, emoji) => void client.react(message, emoji),
      askRemove: (username) => {
        const channel = client.getSnapshot().current;
        if (!channel) return;
        setConfirmation({
          title: `Remove ${username} from #${channel}?`,
          description: `${username} leaves the channel at once; a private channel then needs its password again.`,
          action: "Remove",
          run: () => client.removeMember(channel, username),
        });
      },
      askBan: (username) =>
        setConfirmation({
          title: `Ban ${username}?`,
          description: `${username} is signed out everywhere at once and can no longer sign in.`,
          action: "Ban",
          run: () => client.ban(username),
        }),
    }),
    [client, user.id],
  );
  const moderate = state.isAdmin || (current !== null && state.owned[current] === true);
  const permissions = useMemo<Permissions>(() => ({ moderate, admin: state.isAdmin, dm: dm !== undefined }), [moderate, state.isAdmin, dm]);
  const replyTo = reply && reply.channel === current ? reply.message : null;

  const channel = state.channels.find((c) => c.name === current);
  const channelState = current ? state.byChannel[current] : undefined;
  const blocked = state.blockedUntil !== null && state.blockedUntil > now;
  const typing = typingLabel(state.typing.map((t) => t.username));
  const onlineCount = state.onlineCount ?? state.online.length;

  function toggleOnline() {
    if (window.matchMedia("(min-width: 1024px)").matches) setOnlinePinned((v) => !v);
    else setOnlineOpen(true);
  }

  const sidebar = (
    <Sidebar
      user={user}
      channels={state.channels}
      dms={state.dms}
      current={current}
      joining={state.joining}
      now={new Date(now)}
      admin={state.isAdmin}
      clusterOpen={showCluster}
      onSelect={(name) => {
        setChannelsOpen(false);
        setPage("chat");
        client.selectChannel(name);
      }}
      onCreate={() => {
        setChannelsOpen(false);
        setCreating(true);
      }}
      onNewDm={() => {
        setChannelsOpen(false);
        setNewDm(true);
      }}
      onCluster={() => {
        setChannelsOpen(false);
        setPage("cluster");
      }}
      onLogout={logout}
    />
  );

  return (
    <div className="flex h-dvh overflow-hidden bg-white">
      <aside className="hidden w-64 shrink-0 md:block" aria-label="Sidebar">
        {sidebar}
      </aside>
      <Drawer side="left" open={channelsOpen} onClose={() => setChannelsOpen(false)} label="Channels">
        {sidebar}
      </Drawer>

      {showCluster ? (
        <ClusterScreen
          status={state.status}
          moving={state.moving}
          onBack={() => setPage("chat")}
          onOpenMenu={() => setChannelsOpen(true)}
          onSessionEnded={sessionEnded}
        />
      ) : (
        <main
          className="relative flex min-w-0 flex-1 flex-col bg-slate-50/40"
          onDragEnter={(e) => {
            if (!current || !draggingFiles(e)) return;
            e.preventDefault();
            setDropping(true);
          }}
          onDragOver={(e) => {
            if (!current || !draggingFiles(e)) return;
            e.preventDefault();
            e.dataTransfer.dropEffect = "copy";
          }}
          onDragLeave={(e) => {
            if (!e.currentTarget.contains(e.relatedTarget as Node | null)) setDropping(false);
          }}
          onDrop={(e) => {
            if (!draggingFiles(e)) return;
            e.preventDefault();
            setDropping(false);
            const file = e.dataTransfer.files[0];
            if (file) composer.current?.attach(file);
          }}
        >
          {dropping ? <DropOverlay channel={current ?? ""} /> : null}
          <header className="flex h-14 shrink-0 items-center gap-2 border-b border-slate-200 bg-white px-3 sm:px-5">
            <button
              type="button"
              onClick={() => setChannelsOpen(true)}
              aria-label="Open channels"
              className="-ml-1 rounded-lg p-2 text-slate-600 hover:bg-slate-100 focus-visible:outline-2 focus-visible:outline-brand-600 md:hidden"
            >
              <MenuIcon className="h-5 w-5" />
            </button>
            <div className="flex min-w-0 flex-1 items-center gap-2">
              {dm ? (
                <AtIcon className="h-[18px] w-[18px] shrink-0 text-slate-400" />
              ) : channel?.private ? (
                <LockIcon className="h-[18px] w-[18px] shrink-0 text-slate-400" />
              ) : (
                <HashIcon className="h-[18px] w-[18px] shrink-0 text-slate-400" />
              )}
              <h1 className="truncate text-base font-semibold text-slate-900">{dm ? dm.user.username : (current ?? "…")}</h1>
              {dm ? (
                <p className="flex min-w-0 items-center gap-1.5 truncate border-l border-slate-200 pl-3 text-sm text-slate-500">
                  <span
                    className={`h-2 w-2 shrink-0 rounded-full ${dm.user.online ? "bg-emerald-500" : "ring-2 ring-inset ring-slate-400"}`}
                    aria-hidden="true"
                  />
                  {dm.user.online ? "Online" : lastSeenLabel(dm.user.last_seen, new Date(now))}
                </p>
              ) : channel?.description ? (
                <p className="hidden min-w-0 truncate border-l border-slate-200 pl-3 text-sm text-slate-500 sm:block">
                  {channel.description}
                </p>
              ) : null}
            </div>
            <ConnectionBadge status={state.status} moving={state.moving} />
            <button
              type="button"
              onClick={toggleOnline}
              aria-label={`${onlineCount} online in this channel`}
              title="Who’s online"
              className="inline-flex shrink-0 items-center gap-1.5 rounded-lg px-2.5 py-1.5 text-sm text-slate-600 ring-1 ring-slate-200 hover:bg-slate-50 focus-visible:outline-2 focus-visible:outline-brand-600"
            >
              <UsersIcon className="h-4 w-4" />
              <span className="tabular-nums">{onlineCount}</span>
              <span className="hidden sm:inline">in channel</span>
            </button>
          </header>

          <ConnectionBanner status={state.status} moving={state.moving} onRetry={() => client.reconnectNow()} />
          {state.removedFrom ? <RemovedBanner channel={state.removedFrom} onDismiss={() => client.dismissRemoved()} /> : null}

          {current && channelState ? (
            <MessagePane
              key={`pane-${current}`}
              channel={current}
              title={title}
              state={channelState}
              user={user}
              now={new Date(now)}
              blocked={blocked}
              actions={actions}
              permissions={permissions}
              onLoadOlder={loadOlder}
              onRetry={retry}
              onDiscard={discard}
              onRetryLoad={retryLoad}
            />
          ) : (
            <div className="flex flex-1 items-center justify-center text-sm text-slate-500" role="status">
              {state.status === "connected" ? "Opening channel…" : "Connecting…"}
            </div>
          )}

          <div className="h-6 shrink-0 px-5 text-xs text-slate-500" role="status" aria-live="polite">
            {typing ? (
              <span className="inline-flex items-center gap-1.5">
                <span className="inline-flex gap-0.5" aria-hidden="true">
                  <span className="typing-dot h-1 w-1 rounded-full bg-slate-400" />
                  <span className="typing-dot h-1 w-1 rounded-full bg-slate-400" />
                  <span className="typing-dot h-1 w-1 rounded-full bg-slate-400" />
                </span>
                {typing}
              </span>
            ) : null}
          </div>

          {blocked && state.blockedUntil ? <RateLimitBanner until={state.blockedUntil} now={now} /> : null}

          <Composer
            ref={composer}
            key={`composer-${current ?? ""}`}
            channel={title}
            disabled={!current}
            replyTo={replyTo}
            onCancelReply={() => setReply(null)}
            onSend={(text, file) => {
              client.send(text, file, replyTo ?? undefined);
              setReply(null);
            }}
            onTyping={(hasText) => client.typing(hasText)}
            onUpload={upload}
          />
        </main>
      )}

      {onlinePinned && !showCluster ? (
        <aside className="hidden w-60 shrink-0 border-l border-slate-200 lg:block" aria-label="Online">
          <OnlinePanel users={state.online} count={state.onlineCount} me={user.id} onMessage={(name) => void openDm(name)} />
        </aside>
      ) : null}
      <Drawer side="right" open={onlineOpen} onClose={() => setOnlineOpen(false)} label="Online users">
        <OnlinePanel users={state.online} count={state.onlineCount} me={user.id} onMessage={(name) => void openDm(name)} />
      </Drawer>

      {state.notice ? (
        <div
          role="alert"
          className="fixed bottom-24 left-1/2 z-50 flex max-w-[90vw] -translate-x-1/2 items-center gap-3 rounded-xl bg-slate-900 px-4 py-2.5 text-sm text-white shadow-xl"
        >
          <span>{state.notice.text}</span>
          <button type="button" onClick={() => client.dismissNotice()} aria-label="Dismiss" className="rounded p-0.5 text-slate-400 hover:text-white">
            <CloseIcon className="h-4 w-4" />
          </button>
        </div>
      ) : null}

      <NewDmDialog open={newDm} onClose={() => setNewDm(false)} onOpen={openDm} />
      <ConfirmDialog confirmation={confirmation} onClose={() => setConfirmation(null)} />
      <CreateChannelDialog open={creating} onClose={() => setCreating(false)} onCreate={(n, d, p) => client.createChannel(n, d, p)} />
      <PasswordDialog
        channel={state.passwordPrompt?.channel ?? null}
        error={state.passwordPrompt?.error ?? null}
        onSubmit={(password) => state.passwordPrompt && client.submitPassword(state.passwordPrompt.channel, password)}
        onClose={() => client.cancelPassword()}
      />
    </div>
  );
}

/** Over the chat while a file is dragged onto it. */
function DropOverlay({ channel }: { channel: string }) {
  return (
    <div className="pointer-events-none absolute inset-2 z-40 flex items-center justify-center rounded-2xl border-2 border-dashed border-brand-500 bg-brand-50/90">
      <div className="flex flex-col items-center gap-2 text-brand-700">
        <UploadIcon className="h-8 w-8" />
        <p className="text-base font-semibold">Drop to attach to your message in #{channel}</p>
        <p className="text-sm text-brand-600">One file at a time</p>
      </div>
    </div>
  );
}
