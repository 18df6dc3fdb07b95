// Screenshots of the main screens, for a look at the product: the sign-in screen, the chat
// on a desktop (1280×800) with two people talking, and the chat on a phone (390×844).
//
//   BANTER_URL=http://127.0.0.1:8080 node scripts/screenshots.mjs
//
// Saves PNGs to ../test-artifacts/. The accounts it creates get a random suffix.

import {
  DESKTOP,
  PHONE,
  artifacts,
  cookieHeader,
  launch,
  openApp,
  registerThroughUi,
  screenshot,
  sendAll,
  socketFor,
} from "../e2e/helpers.mjs";

const baseUrl = (process.env.BANTER_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const tag = Math.random().toString(36).slice(2, 6);
const browser = await launch();
const timer = setTimeout(() => {
  console.error("screenshots: gave up after 120 s");
  process.exit(1);
}, 120_000);

try {
  const signIn = await openApp(browser, baseUrl);
  await signIn.page.getByLabel("Email or username").waitFor();
  await screenshot(signIn.page, "signin-desktop");
  await signIn.context.close();

  const phoneSignIn = await openApp(browser, baseUrl, { viewport: PHONE, phone: true });
  await phoneSignIn.page.getByLabel("Email or username").waitFor();
  await screenshot(phoneSignIn.page, "signin-phone");
  await phoneSignIn.context.close();

  const maya = await openApp(browser, baseUrl, { viewport: DESKTOP });
  await registerThroughUi(maya.page, `maya-${tag}`);
  const oliver = await openApp(browser, baseUrl, { viewport: DESKTOP });
  await registerThroughUi(oliver.page, `oliver-${tag}`);

  const mayaSocket = await socketFor(baseUrl, await cookieHeader(maya.context));
  const oliverSocket = await socketFor(baseUrl, await cookieHeader(oliver.context));
  await sendAll(oliverSocket, "general", ["Morning! Is the release still on for today?"]);
  await sendAll(mayaSocket, "general", [
    "Yes — the build is green and the changelog is ready.",
    "Plan:\n1. Tag at 14:00\n2. Roll out to 10%\n3. Full rollout after lunch",
  ]);
  await sendAll(oliverSocket, "general", ["Perfect. I’ll watch the dashboards during the rollout 👀"]);
  mayaSocket.disconnect();
  oliverSocket.disconnect();

  await maya.page.getByText("I’ll watch the dashboards").last().waitFor();
  await maya.page.getByLabel("Message #general").fill("Thanks! Ping me if anything looks off.");
  await maya.page.getByRole("button", { name: "Send" }).click();
  await oliver.page.getByLabel("Message #general").pressSequentially("Will do", { delay: 40 });
  await maya.page.getByText(`oliver-${tag} is typing…`).waitFor();
  await maya.page.getByRole("list", { name: "Online users" }).getByText(`oliver-${tag}`).waitFor();
  await maya.page.getByRole("button", { name: "2 online in this channel" }).waitFor();
  await screenshot(maya.page, "chat-desktop");

  const phone = await browser.newContext({
    viewport: PHONE,
    isMobile: true,
    hasTouch: true,
    deviceScaleFactor: 2,
    baseURL: baseUrl,
    storageState: await maya.context.storageState(),
  });
  const phonePage = await phone.newPage();
  await phonePage.goto("/");
  await phonePage.getByText("Thanks! Ping me").last().waitFor({ timeout: 15_000 });
  await screenshot(phonePage, "chat-phone");
  await phonePage.getByRole("button", { name: "Open channels" }).click();
  await phonePage.getByRole("dialog", { name: "Channels" }).waitFor();
  await screenshot(phonePage, "chat-phone-channels");
  await phone.close();
  await maya.context.close();
  await oliver.context.close();
  console.log(`screenshots saved to ${artifacts}`);
} finally {
  clearTimeout(timer);
  await browser.close();
}
