package handlers

import "github.com/labstack/echo/v4"

// duktigRoutes serves the duktig refresh style (issue 5: not built yet).
func (s *server) duktigRoutes(g *echo.Group) {}
