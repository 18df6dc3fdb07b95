"use client";

import { useEffect, useState } from "react";
import { api, ApiError } from "@/lib/api";
import type { User } from "@/lib/types";
import { AuthScreen } from "./AuthScreen";
import { ChatScreen } from "./ChatScreen";
import { Logo } from "./icons";

type Session = { kind: "checking" } | { kind: "anonymous"; notice?: string } | { kind: "signed-in"; user: User } | { kind: "error"; message: string };

/** Decides between the sign-in screen and the chat, from the session cookie. */
export function App() {
  const [session, setSession] = useState<Session>({ kind: "checking" });
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let live = true;
    api
      .me()
      .then((user) => live && setSession({ kind: "signed-in", user }))
      .catch((e) => {
        if (!live) return;
        if (e instanceof ApiError && e.status === 401) setSession({ kind: "anonymous" });
        else setSession({ kind: "error", message: e instanceof Error ? e.message : "The server is unavailable." });
      });
    return () => {
      live = false;
    };
  }, [attempt]);

  if (session.kind === "checking") {
    return (
      <main className="flex h-dvh items-center justify-center" aria-busy="true">
        <div className="flex flex-col items-center gap-3 text-slate-500">
          <Logo className="h-10 w-10 animate-pulse" />
          <p className="text-sm">Loading…</p>
        </div>
      </main>
    );
  }
  if (session.kind === "error") {
    return (
      <main className="flex h-dvh items-center justify-center p-6">
        <div className="max-w-sm rounded-2xl bg-white p-6 text-center shadow-sm ring-1 ring-slate-200">
          <Logo className="mx-auto h-10 w-10" />
          <h1 className="mt-4 text-lg font-semibold">Can’t reach banter</h1>
          <p className="mt-1 text-sm text-slate-600">{session.message}</p>
          <button
            type="button"
            onClick={() => {
              setSession({ kind: "checking" });
              setAttempt((n) => n + 1);
            }}
            className="mt-5 rounded-lg bg-brand-600 px-4 py-2 text-sm font-medium text-white hover:bg-brand-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600"
          >
            Try again
          </button>
        </div>
      </main>
    );
  }
  if (session.kind === "anonymous") {
    return <AuthScreen notice={session.notice} onSignedIn={(user) => setSession({ kind: "signed-in", user })} />;
  }
  return (
    <ChatScreen
      key={session.user.id}
      user={session.user}
      onSignedOut={(notice) => setSession({ kind: "anonymous", notice })}
    />
  );
}
