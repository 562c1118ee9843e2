// Drives a real Chromium through the playground of a running pixfork and
// prints what it saw as one JSON object; tests/playground.rs starts the
// server, runs this, and judges the observations.
//
//   node playground.mjs BASE_URL PHOTO HEIC [SCREENSHOT.png]
//
// CHROMIUM names the browser binary (the Debian package's by default).
import { chromium } from "playwright-core";

const [base, photo, heic, screenshot] = process.argv.slice(2);
if (!base || !photo || !heic) {
  console.error("usage: node playground.mjs BASE_URL PHOTO HEIC [SCREENSHOT.png]");
  process.exit(2);
}

// Every wait has a deadline: a page that never answers fails the run.
const TIMEOUT = 20_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // no sandbox: the suite runs as root; no GPU or background traffic on a CI box
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
  timeout: 60_000,
});
const out = { console_errors: [], csp_violations: [], page_errors: [], failed_loads: [] };
// The page's own files (and the page) must all load: an API call may fail
// on purpose, nothing else may.
const watchLoads = (p) =>
  p.on("response", (r) => {
    if (r.status() >= 400 && !new URL(r.url()).pathname.startsWith("/v1/")) {
      out.failed_loads.push(`${r.status()} ${r.url()}`);
    }
  });
const cspProbe = () => {
  document.addEventListener("securitypolicyviolation", (e) => {
    (window.__csp = window.__csp || []).push(`${e.violatedDirective} ${e.blockedURI}`);
  });
};
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.on("console", (m) => {
    // a failed API call is logged by the browser as a resource error; those
    // are expected in the bad-parameter case and judged through the page
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) out.console_errors.push(m.text());
  });
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  watchLoads(page);
  await page.addInitScript(cspProbe);

  await page.goto(base + "/");
  await page.waitForSelector("body[data-ready=true]");
  out.op_options = await page.$$eval('[data-test="op"] option', (os) => os.map((o) => o.value));

  const result = page.locator('[data-test="result"]');
  const naturalWidth = () => result.evaluate((img) => (img.complete ? img.naturalWidth : 0));
  // Waits for a run to finish: the Run button is enabled again.
  const runAndWait = async (how) => {
    const before = await page.locator('[data-test="status"]').textContent();
    if (how === "enter") await page.keyboard.press("Enter");
    else await page.click('[data-test="run"]');
    await page.waitForFunction(
      (prev) => {
        const s = document.querySelector('[data-test="status"]').textContent;
        return !document.querySelector('[data-test="run"]').disabled && s !== prev && !s.startsWith("Running");
      },
      before,
    );
  };

  // 1. one op: upload, resize to width 200, run
  await page.setInputFiles('[data-test="file"]', photo);
  await page.waitForFunction(() => document.querySelector('[data-test="before-meta"] [data-test="size"]'));
  out.before_size = await page.locator('[data-test="before-meta"] [data-test="size"]').textContent();
  await page.selectOption('[data-test="op"]', "resize");
  await page.fill('input[name="width"]', "200");
  await runAndWait("click");
  out.resize = {
    natural_width: await naturalWidth(),
    curl: await page.locator('[data-test="curl"]').textContent(),
    error_hidden: await page.locator('[data-test="error"]').isHidden(),
    format: await page.locator('[data-test="result-meta"] [data-test="format"]').textContent(),
    timing_stages: await page.$$eval('[data-test="timing"] tbody th', (ths) => ths.map((t) => t.textContent)),
  };

  // 2. a bad parameter: the server's error, shown as it sent it
  await page.fill('input[name="width"]', "0");
  await runAndWait("click");
  out.bad = {
    error: await page.locator('[data-test="error"]').textContent(),
    error_visible: await page.locator('[data-test="error"]').isVisible(),
  };

  // 3. keyboard: Enter in a field runs the request
  await page.fill('input[name="width"]', "120");
  await page.focus('input[name="width"]');
  await runAndWait("enter");
  out.enter = { natural_width: await naturalWidth(), error_hidden: await page.locator('[data-test="error"]').isHidden() };

  // 4. a pipeline of two ops
  await page.fill('input[name="width"]', "200");
  await page.click('[data-test="add-step"]');
  await page.selectOption('[data-test="op"]', "blur");
  await page.fill('input[name="sigma"]', "2");
  await runAndWait("click");
  out.pipeline = {
    natural_width: await naturalWidth(),
    curl: await page.locator('[data-test="curl"]').textContent(),
    steps: await page.$$eval('[data-test="steps"] li .step', (bs) => bs.map((b) => b.textContent)),
  };

  // 5. info answers JSON, shown as text
  await page.click('[data-test="steps"] li:nth-child(2) button[aria-label^="Remove"]');
  await page.selectOption('[data-test="op"]', "info");
  await runAndWait("click");
  out.info = JSON.parse(await page.locator('[data-test="result-json"]').textContent());

  // 6. HEIC, which Chromium cannot show: the page falls back to the server's PNG
  await page.selectOption('[data-test="op"]', "resize");
  await page.fill('input[name="width"]', "100");
  await page.setInputFiles('[data-test="file"]', heic);
  // The preview (a PNG from /v1/convert) and the description (/v1/info)
  // are two requests: wait for both, in whichever order they end.
  await page.waitForFunction(() => {
    const img = document.querySelector('[data-test="before"]');
    const format = document.querySelector('[data-test="before-meta"] [data-test="format"]');
    return !img.hidden && img.complete && img.naturalWidth > 0 && format !== null;
  });
  out.heic_before_width = await page.locator('[data-test="before"]').evaluate((img) => img.naturalWidth);
  out.heic_before_meta = await page.locator('[data-test="before-meta"] [data-test="format"]').textContent();

  if (screenshot) {
    await page.setInputFiles('[data-test="file"]', photo);
    await page.fill('input[name="width"]', "400");
    await runAndWait("click");
    await page.screenshot({ path: screenshot, fullPage: true });
  }

  // 6b. overlay: the server's registered overlays are offered for image=
  await page.selectOption('[data-test="op"]', "overlay");
  out.overlay_choices = await page.$$eval('input[name="image"]', (inputs) => {
    const list = inputs[0] && inputs[0].list;
    return list ? [...list.options].map((o) => o.value) : [];
  });
  await page.setInputFiles('[data-test="file"]', photo);
  await page.fill('input[name="image"]', out.overlay_choices[0] || "");
  await page.selectOption('select[name="gravity"]', "southeast");
  await runAndWait("click");
  out.overlay = {
    natural_width: await naturalWidth(),
    curl: await page.locator('[data-test="curl"]').textContent(),
  };

  // 7. a phone: one column, nothing wider than the screen
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  small.setDefaultTimeout(TIMEOUT);
  watchLoads(small);
  small.on("pageerror", (e) => out.page_errors.push(`phone: ${e}`));
  await small.addInitScript(cspProbe);
  await small.goto(base + "/");
  await small.waitForSelector("body[data-ready=true]");
  out.phone = await small.evaluate(() => ({
    scroll_width: document.documentElement.scrollWidth,
    inner_width: window.innerWidth,
  }));
  const phoneCsp = await small.evaluate(() => window.__csp || []);
  await phone.close();

  out.csp_violations = (await page.evaluate(() => window.__csp || [])).concat(phoneCsp);
} catch (err) {
  out.failure = String(err && err.stack ? err.stack : err);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
