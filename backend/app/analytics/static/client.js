// The browser tracker: written next.
