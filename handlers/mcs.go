package handlers

import "github.com/labstack/echo/v4"

// mcsRoutes serves the mcs refresh style (issue 5: not built yet).
func (s *server) mcsRoutes(g *echo.Group) {}
