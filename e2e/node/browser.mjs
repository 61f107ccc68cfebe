// Headless Chromium (Debian's) driven by playwright-core for portcullis e2e tests.
// stdin: {"steps": [...], "executablePath", "args": [...], "timeout": ms}
// stdout (last line): {"ok", "error", "url", "status", "text", "cookies", "steps", "tabs"}
// Steps: goto, login, expect_status, text, expect_url, click, fill, wait_for_url, fetch,
// open_tabs (parallel step lists in new tabs of the same profile), screenshot, sleep,
// save_text (the page's text into the step's record), viewport ({width, height}).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const cfg = JSON.parse(input);
const timeout = cfg.timeout || 15000;

class StepError extends Error {}

function track(page) {
  const st = { status: null };
  page.on('response', (r) => {
    if (r.request().isNavigationRequest() && r.frame() === page.mainFrame()) st.status = r.status();
  });
  return st;
}

async function bodyText(page) {
  try { return await page.evaluate(() => document.body ? document.body.innerText : document.documentElement.textContent || ''); } catch { return ''; }
}

async function runSteps(ctx, page, steps, log) {
  const st = track(page);
  for (const step of steps) {
    const rec = { step: Object.keys(step)[0] };
    log.push(rec);
    if ('goto' in step) {
      const resp = await page.goto(step.goto, { waitUntil: step.waitUntil || 'load', timeout });
      if (resp) st.status = resp.status();
    } else if ('login' in step) {
      const { username, password } = typeof step.login === 'string'
        ? { username: step.login, password: step.password } : step.login;
      await page.waitForSelector('input[name="username"]', { timeout });
      await page.fill('input[name="username"]', username);
      await page.fill('input[name="password"]', password);
      await Promise.all([
        page.waitForNavigation({ waitUntil: 'load', timeout }),
        page.click('[type="submit"]'),
      ]);
    } else if ('expect_status' in step) {
      if (st.status !== step.expect_status) throw new StepError(`expected status ${step.expect_status}, got ${st.status}`);
    } else if ('text' in step || 'expect_text' in step) {
      const want = step.text ?? step.expect_text;
      const text = await bodyText(page);
      if (!text.includes(want)) throw new StepError(`page text lacks ${JSON.stringify(want)}`);
    } else if ('expect_url' in step) {
      if (!page.url().includes(step.expect_url)) throw new StepError(`url ${page.url()} lacks ${step.expect_url}`);
    } else if ('wait_for_url' in step) {
      await page.waitForURL((u) => u.toString().includes(step.wait_for_url), { timeout });
    } else if ('click' in step) {
      await page.click(step.click, { timeout });
      await page.waitForLoadState('load', { timeout });
    } else if ('fill' in step) {
      for (const [sel, val] of Object.entries(step.fill)) await page.fill(sel, val, { timeout });
    } else if ('fetch' in step) {
      const r = await ctx.request.fetch(step.fetch, { method: step.method || 'GET', headers: step.headers || {}, maxRedirects: 0, timeout });
      rec.fetch = { status: r.status(), headers: r.headers(), body: (await r.text()).slice(0, 20000) };
    } else if ('open_tabs' in step) {
      rec.tabs = await Promise.all(step.open_tabs.map(async (tabSteps) => {
        const p = await ctx.newPage();
        const tlog = [];
        try {
          const s = await runSteps(ctx, p, tabSteps, tlog);
          return { ok: true, url: p.url(), status: s.status, text: (await bodyText(p)).slice(0, 20000), steps: tlog };
        } catch (e) {
          return { ok: false, error: String(e.message || e), url: p.url(), status: null, text: (await bodyText(p)).slice(0, 5000), steps: tlog };
        } finally { await p.close(); }
      }));
      const bad = rec.tabs.find((t) => !t.ok);
      if (bad) throw new StepError(`a tab failed: ${bad.error}`);
    } else if ('screenshot' in step) {
      await page.screenshot({ path: step.screenshot, fullPage: true });
    } else if ('save_text' in step) {
      rec.text = (await bodyText(page)).slice(0, 20000);
      rec.title = await page.title();
    } else if ('viewport' in step) {
      await page.setViewportSize(step.viewport);
    } else if ('sleep' in step) {
      await page.waitForTimeout(step.sleep);
    } else {
      throw new StepError(`unknown step ${JSON.stringify(step)}`);
    }
    rec.url = page.url();
    rec.status = st.status;
  }
  return st;
}

const profile = mkdtempSync(join(tmpdir(), 'portcullis-chromium-'));
const result = { ok: false, error: null, url: null, status: null, text: '', cookies: [], steps: [] };
let ctx;
try {
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: cfg.executablePath || '/usr/bin/chromium',
    headless: true,
    args: cfg.args || [],
    ignoreHTTPSErrors: true,
    timeout,
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  try {
    const st = await runSteps(ctx, page, cfg.steps || [], result.steps);
    result.ok = true;
    result.status = st.status;
  } catch (e) {
    result.error = String(e.message || e);
  }
  result.url = page.url();
  if (result.status === null) result.status = result.steps.at(-1)?.status ?? null;
  result.text = (await bodyText(page)).slice(0, 50000);
  result.cookies = await ctx.cookies();
  result.tabs = result.steps.filter((s) => s.tabs).flatMap((s) => s.tabs);
} catch (e) {
  result.error = `launch: ${e.message || e}`;
} finally {
  if (ctx) await ctx.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(result.ok ? 0 : 1);
