// What the Node scripts' `page.evaluate(() => ...)` callbacks read and write on the page's window:
// values the test pages and the scripts themselves put there (`window.hiedge`, `window.__bench`,
// ...). They are the pages' own, so they are typed loosely here; everything else is checked.
interface Window {
  [name: string]: any;
}
