"""One router per screen area; app.create_app includes them in this order."""

from lifeline.console.routes import auditor, board, caseworker, charity, clerk, county, home, reviewer

ROUTERS = [home.router, board.router, clerk.router, caseworker.router, reviewer.router, county.router,
           auditor.router, charity.router]
