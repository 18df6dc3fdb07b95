"use client";

import { useState, type FormEvent } from "react";
import { api, ApiError, fieldSentence } from "@/lib/api";
import { avatarColor, initials } from "@/lib/avatar";
import type { User } from "@/lib/types";
import { Field } from "./Field";
import { Logo } from "./icons";

type Mode = "sign-in" | "register";
type Errors = Record<string, string>;

const buttonPrimary =
  "inline-flex w-full items-center justify-center rounded-lg bg-brand-600 px-4 py-2.5 text-[15px] font-semibold text-white shadow-sm transition hover:bg-brand-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600 disabled:cursor-not-allowed disabled:opacity-60";

/** Sign in, create an account, or enter as a guest. */
export function AuthScreen({ onSignedIn, notice }: { onSignedIn: (user: User) => void; notice?: string | null }) {
  const [mode, setMode] = useState<Mode>("sign-in");
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<Errors>({});
  const [login, setLogin] = useState("");
  const [username, setUsername] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");

  const switchMode = (next: Mode) => {
    setMode(next);
    setErrors({});
    setPassword("");
  };

  async function run(action: () => Promise<User>, toErrors: (e: ApiError) => Errors) {
    setBusy(true);
    setErrors({});
    try {
      onSignedIn(await action());
    } catch (e) {
      setErrors(e instanceof ApiError ? toErrors(e) : { form: "Something went wrong. Please try again." });
      setBusy(false);
    }
  }

  function submit(e: FormEvent) {
    e.preventDefault();
    if (mode === "sign-in") {
      const missing: Errors = {};
      if (!login.trim()) missing.login = "Enter your email or username.";
      if (!password) missing.password = "Enter your password.";
      if (Object.keys(missing).length) return setErrors(missing);
      void run(
        () => api.login(login, password),
        (err): Errors => {
          if (err.code === "invalid_credentials") return { password: "Wrong email, username or password." };
          if (err.code === "forbidden") return { form: "This account is banned: it can no longer sign in." };
          if (err.code === "rate_limited") {
            const min = Math.max(1, Math.ceil((err.retryAfterMs ?? 60_000) / 60_000));
            return { form: `Too many failed attempts. Try again in ${min} minute${min === 1 ? "" : "s"}.` };
          }
          const field = err.fieldErrors.email ?? err.fieldErrors.username;
          return field ? { login: fieldSentence("Email or username", field) } : { form: err.message };
        },
      );
    } else {
      void run(
        () => api.register(username, email, password),
        (err) => {
          const labels: Record<string, string> = { username: "Username", email: "Email", password: "Password" };
          const out: Errors = {};
          for (const [field, message] of Object.entries(err.fieldErrors)) {
            out[field] = fieldSentence(labels[field] ?? field, message);
          }
          if (err.code === "conflict") out.username = "That username or email is already taken.";
          if (Object.keys(out).length === 0) out.form = err.message;
          return out;
        },
      );
    }
  }

  function guest() {
    void run(() => api.guest(), (err) => ({ form: err.message }));
  }

  return (
    <main className="flex min-h-dvh bg-white">
      <section className="relative hidden w-[44%] max-w-xl flex-col justify-between overflow-hidden bg-gradient-to-br from-brand-600 via-indigo-600 to-violet-600 p-12 text-white lg:flex">
        <div className="flex items-center gap-3">
          <Logo className="h-9 w-9 rounded-xl ring-2 ring-white/30" />
          <span className="text-xl font-semibold tracking-tight">banter</span>
        </div>
        <div>
          <h2 className="text-4xl font-semibold leading-tight tracking-tight">Conversations that keep up with your team.</h2>
          <p className="mt-4 max-w-md text-base text-indigo-100">
            Channels, presence and typing in real time — and nothing lost when the connection drops.
          </p>
          <div className="mt-10 space-y-3" aria-hidden="true">
            {[
              { name: "maya", text: "Deploy is green. Shipping the new search 🚀" },
              { name: "oliver", text: "Nice! I’ll keep an eye on the dashboards." },
              { name: "sam", text: "Lunch at 12:30?" },
            ].map((m) => (
              <div key={m.name} className="flex max-w-md items-start gap-3 rounded-2xl bg-white/10 p-3 backdrop-blur-sm ring-1 ring-white/15">
                <span className={`flex h-8 w-8 shrink-0 items-center justify-center rounded-full text-xs font-semibold ${avatarColor(m.name)}`}>
                  {initials(m.name)}
                </span>
                <div className="min-w-0">
                  <p className="text-sm font-semibold">{m.name}</p>
                  <p className="text-sm text-indigo-50">{m.text}</p>
                </div>
              </div>
            ))}
          </div>
        </div>
        <p className="text-sm text-indigo-200">Real-time chat, built to scale.</p>
        <div className="pointer-events-none absolute -right-24 -top-24 h-72 w-72 rounded-full bg-white/10 blur-2xl" />
      </section>

      <section className="flex flex-1 items-center justify-center px-5 py-10 sm:px-10">
        <div className="w-full max-w-sm">
          <div className="mb-8 flex items-center gap-2.5 lg:hidden">
            <Logo className="h-9 w-9" />
            <span className="text-xl font-semibold tracking-tight">banter</span>
          </div>
          <h1 className="text-2xl font-semibold tracking-tight text-slate-900">
            {mode === "sign-in" ? "Welcome back" : "Create your account"}
          </h1>
          <p className="mt-1.5 text-sm text-slate-500">
            {mode === "sign-in" ? "Sign in to pick up where you left off." : "It takes less than a minute."}
          </p>

          {notice ? (
            <p role="alert" className="mt-5 rounded-lg bg-amber-50 px-3 py-2.5 text-sm text-amber-900 ring-1 ring-amber-200">
              {notice}
            </p>
          ) : null}

          <div role="tablist" aria-label="Sign in or create an account" className="mt-6 grid grid-cols-2 rounded-lg bg-slate-100 p-1 text-sm font-medium">
            {(["sign-in", "register"] as const).map((m) => (
              <button
                key={m}
                type="button"
                role="tab"
                aria-selected={mode === m}
                onClick={() => switchMode(m)}
                className={`rounded-md py-1.5 transition focus-visible:outline-2 focus-visible:outline-brand-600 ${
                  mode === m ? "bg-white text-slate-900 shadow-sm" : "text-slate-500 hover:text-slate-700"
                }`}
              >
                {m === "sign-in" ? "Sign in" : "Create account"}
              </button>
            ))}
          </div>

          <form onSubmit={submit} noValidate className="mt-6 space-y-4">
            {mode === "sign-in" ? (
              <>
                <Field
                  label="Email or username"
                  name="login"
                  autoComplete="username"
                  value={login}
                  onChange={(e) => setLogin(e.target.value)}
                  error={errors.login}
                  autoFocus
                />
                <Field
                  label="Password"
                  name="password"
                  type="password"
                  autoComplete="current-password"
                  value={password}
                  onChange={(e) => setPassword(e.target.value)}
                  error={errors.password}
                />
              </>
            ) : (
              <>
                <Field
                  label="Username"
                  name="username"
                  autoComplete="username"
                  value={username}
                  onChange={(e) => setUsername(e.target.value)}
                  error={errors.username}
                  hint="3–32 letters, digits, dots, dashes or underscores."
                  autoFocus
                />
                <Field
                  label="Email"
                  name="email"
                  type="email"
                  autoComplete="email"
                  value={email}
                  onChange={(e) => setEmail(e.target.value)}
                  error={errors.email}
                />
                <Field
                  label="Password"
                  name="new-password"
                  type="password"
                  autoComplete="new-password"
                  value={password}
                  onChange={(e) => setPassword(e.target.value)}
                  error={errors.password}
                  hint="At least 8 characters."
                />
              </>
            )}
            {errors.form ? (
              <p role="alert" className="rounded-lg bg-rose-50 px-3 py-2 text-sm text-rose-700 ring-1 ring-rose-200">
                {errors.form}
              </p>
            ) : null}
            <button type="submit" disabled={busy} className={buttonPrimary}>
              {mode === "sign-in" ? "Sign in" : "Create account"}
            </button>
          </form>

          <div className="my-6 flex items-center gap-3 text-xs uppercase tracking-wide text-slate-400">
            <span className="h-px flex-1 bg-slate-200" />
            or
            <span className="h-px flex-1 bg-slate-200" />
          </div>
          <button
            type="button"
            onClick={guest}
            disabled={busy}
            className="inline-flex w-full items-center justify-center rounded-lg bg-white px-4 py-2.5 text-[15px] font-medium text-slate-700 ring-1 ring-slate-300 transition hover:bg-slate-50 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-brand-600 disabled:opacity-60"
          >
            Continue as guest
          </button>
          <p className="mt-3 text-center text-xs text-slate-500">Guests get a random name and no password.</p>
        </div>
      </section>
    </main>
  );
}
