package handlers

import "github.com/labstack/echo/v4"

// abitmediaRoutes serves the abitmedia refresh style (issue 5: not built yet).
func (s *server) abitmediaRoutes(g *echo.Group) {}
